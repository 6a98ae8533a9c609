from giskard.rpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultChunk(_message.Message):
    __slots__ = ("job_id", "data")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    data: bytes
    def __init__(self, job_id: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ResultReceived(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "output", "end", "draining", "progress", "batch", "cache")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    output: _common_pb2.JobOutput
    end: _common_pb2.JobEnd
    draining: Draining
    progress: _common_pb2.JobProgress
    batch: WorkerBatch
    cache: CacheReport
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.JobOutput, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.JobEnd, _Mapping]] = ..., draining: _Optional[_Union[Draining, _Mapping]] = ..., progress: _Optional[_Union[_common_pb2.JobProgress, _Mapping]] = ..., batch: _Optional[_Union[WorkerBatch, _Mapping]] = ..., cache: _Optional[_Union[CacheReport, _Mapping]] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("welcome", "refusal", "job", "role", "cancel", "control", "batch")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    refusal: Refusal
    job: Job
    role: Role
    cancel: CancelJob
    control: Control
    batch: HubBatch
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., role: _Optional[_Union[Role, _Mapping]] = ..., cancel: _Optional[_Union[CancelJob, _Mapping]] = ..., control: _Optional[_Union[Control, _Mapping]] = ..., batch: _Optional[_Union[HubBatch, _Mapping]] = ...) -> None: ...

class WorkerBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[WorkerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[WorkerMessage, _Mapping]]] = ...) -> None: ...

class HubBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[HubMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[HubMessage, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol_version", "info", "concurrency", "prefetch", "held_jobs", "reattaches", "accepts_batches", "compression")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    HELD_JOBS_FIELD_NUMBER: _ClassVar[int]
    REATTACHES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    info: _common_pb2.WorkerInfo
    concurrency: int
    prefetch: int
    held_jobs: _containers.RepeatedScalarFieldContainer[str]
    reattaches: bool
    accepts_batches: bool
    compression: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, protocol_version: _Optional[int] = ..., info: _Optional[_Union[_common_pb2.WorkerInfo, _Mapping]] = ..., concurrency: _Optional[int] = ..., prefetch: _Optional[int] = ..., held_jobs: _Optional[_Iterable[str]] = ..., reattaches: _Optional[bool] = ..., accepts_batches: _Optional[bool] = ..., compression: _Optional[_Iterable[str]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("protocol_version", "hub_version", "active", "session_id", "reattached", "reattach_grace_s", "accepts_batches", "compression", "accepts_cache_reports")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HUB_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REATTACHED_FIELD_NUMBER: _ClassVar[int]
    REATTACH_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_CACHE_REPORTS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    hub_version: str
    active: bool
    session_id: str
    reattached: _containers.RepeatedScalarFieldContainer[str]
    reattach_grace_s: float
    accepts_batches: bool
    compression: str
    accepts_cache_reports: bool
    def __init__(self, protocol_version: _Optional[int] = ..., hub_version: _Optional[str] = ..., active: _Optional[bool] = ..., session_id: _Optional[str] = ..., reattached: _Optional[_Iterable[str]] = ..., reattach_grace_s: _Optional[float] = ..., accepts_batches: _Optional[bool] = ..., compression: _Optional[str] = ..., accepts_cache_reports: _Optional[bool] = ...) -> None: ...

class CacheReport(_message.Message):
    __slots__ = ("entries", "size_bytes", "limit_bytes", "largest", "latest")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    LARGEST_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    entries: int
    size_bytes: int
    limit_bytes: int
    largest: _containers.RepeatedCompositeFieldContainer[CachedInput]
    latest: _containers.RepeatedCompositeFieldContainer[CachedInput]
    def __init__(self, entries: _Optional[int] = ..., size_bytes: _Optional[int] = ..., limit_bytes: _Optional[int] = ..., largest: _Optional[_Iterable[_Union[CachedInput, _Mapping]]] = ..., latest: _Optional[_Iterable[_Union[CachedInput, _Mapping]]] = ...) -> None: ...

class CachedInput(_message.Message):
    __slots__ = ("blake3", "size", "last_used_at")
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    blake3: str
    size: int
    last_used_at: float
    def __init__(self, blake3: _Optional[str] = ..., size: _Optional[int] = ..., last_used_at: _Optional[float] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason", "message")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[Refusal.Reason]
        PROTOCOL_VERSION: _ClassVar[Refusal.Reason]
        BAD_HELLO: _ClassVar[Refusal.Reason]
        KEY_REVOKED: _ClassVar[Refusal.Reason]
        BAD_MESSAGE: _ClassVar[Refusal.Reason]
        NAME_TAKEN: _ClassVar[Refusal.Reason]
        REPLACED: _ClassVar[Refusal.Reason]
    REASON_UNSPECIFIED: Refusal.Reason
    PROTOCOL_VERSION: Refusal.Reason
    BAD_HELLO: Refusal.Reason
    KEY_REVOKED: Refusal.Reason
    BAD_MESSAGE: Refusal.Reason
    NAME_TAKEN: Refusal.Reason
    REPLACED: Refusal.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: Refusal.Reason
    message: str
    def __init__(self, reason: _Optional[_Union[Refusal.Reason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("active", "message")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    active: bool
    message: str
    def __init__(self, active: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "spec")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec: _common_pb2.JobSpec
    def __init__(self, job_id: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.JobSpec, _Mapping]] = ...) -> None: ...

class CancelJob(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("action", "force", "by")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[Control.Action]
        PAUSE: _ClassVar[Control.Action]
        RESUME: _ClassVar[Control.Action]
        DRAIN: _ClassVar[Control.Action]
        STOP: _ClassVar[Control.Action]
    ACTION_UNSPECIFIED: Control.Action
    PAUSE: Control.Action
    RESUME: Control.Action
    DRAIN: Control.Action
    STOP: Control.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    action: Control.Action
    force: bool
    by: str
    def __init__(self, action: _Optional[_Union[Control.Action, str]] = ..., force: _Optional[bool] = ..., by: _Optional[str] = ...) -> None: ...

class Draining(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FetchArtifactRequest(_message.Message):
    __slots__ = ("blake3", "shared_memory")
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    blake3: str
    shared_memory: bool
    def __init__(self, blake3: _Optional[str] = ..., shared_memory: _Optional[bool] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data", "compression", "shared_path", "shared_inode")
    DATA_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    SHARED_PATH_FIELD_NUMBER: _ClassVar[int]
    SHARED_INODE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    compression: str
    shared_path: str
    shared_inode: int
    def __init__(self, data: _Optional[bytes] = ..., compression: _Optional[str] = ..., shared_path: _Optional[str] = ..., shared_inode: _Optional[int] = ...) -> None: ...
