from giskard.rpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConnectedWorker(_message.Message):
    __slots__ = ("info", "active", "connected_at", "peer", "concurrency", "running", "prefetch", "paused", "draining", "away_since")
    INFO_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    AWAY_SINCE_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.WorkerInfo
    active: bool
    connected_at: float
    peer: str
    concurrency: int
    running: _containers.RepeatedCompositeFieldContainer[RunningJob]
    prefetch: int
    paused: bool
    draining: bool
    away_since: float
    def __init__(self, info: _Optional[_Union[_common_pb2.WorkerInfo, _Mapping]] = ..., active: _Optional[bool] = ..., connected_at: _Optional[float] = ..., peer: _Optional[str] = ..., concurrency: _Optional[int] = ..., running: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ..., prefetch: _Optional[int] = ..., paused: _Optional[bool] = ..., draining: _Optional[bool] = ..., away_since: _Optional[float] = ...) -> None: ...

class RunningJob(_message.Message):
    __slots__ = ("job_id", "kind", "started_at", "done", "total", "waiting")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: str
    started_at: float
    done: int
    total: int
    waiting: bool
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[str] = ..., started_at: _Optional[float] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., waiting: _Optional[bool] = ...) -> None: ...

class ListWorkersReply(_message.Message):
    __slots__ = ("workers", "queued", "recent", "store", "waiting_for_worker")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_WORKER_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[ConnectedWorker]
    queued: int
    recent: _containers.RepeatedCompositeFieldContainer[EndedJob]
    store: ArtifactStoreStatus
    waiting_for_worker: int
    def __init__(self, workers: _Optional[_Iterable[_Union[ConnectedWorker, _Mapping]]] = ..., queued: _Optional[int] = ..., recent: _Optional[_Iterable[_Union[EndedJob, _Mapping]]] = ..., store: _Optional[_Union[ArtifactStoreStatus, _Mapping]] = ..., waiting_for_worker: _Optional[int] = ...) -> None: ...

class ArtifactStoreStatus(_message.Message):
    __slots__ = ("artifacts", "size_bytes", "max_bytes", "pinned")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    artifacts: int
    size_bytes: int
    max_bytes: int
    pinned: int
    def __init__(self, artifacts: _Optional[int] = ..., size_bytes: _Optional[int] = ..., max_bytes: _Optional[int] = ..., pinned: _Optional[int] = ...) -> None: ...

class EndedJob(_message.Message):
    __slots__ = ("job_id", "kind", "worker_id", "submitted_at", "ended_at", "reason", "detail")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: str
    worker_id: str
    submitted_at: float
    ended_at: float
    reason: _common_pb2.EndReason
    detail: str
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[str] = ..., worker_id: _Optional[str] = ..., submitted_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., reason: _Optional[_Union[_common_pb2.EndReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ArtifactList(_message.Message):
    __slots__ = ("artifacts",)
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactRef]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactRef, _Mapping]]] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("ref", "data", "shared_path", "shared_inode")
    REF_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHARED_PATH_FIELD_NUMBER: _ClassVar[int]
    SHARED_INODE_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ArtifactRef
    data: bytes
    shared_path: str
    shared_inode: int
    def __init__(self, ref: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., data: _Optional[bytes] = ..., shared_path: _Optional[str] = ..., shared_inode: _Optional[int] = ...) -> None: ...

class RunJobRequest(_message.Message):
    __slots__ = ("spec", "wait_for_worker_s", "worker", "labels", "job_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_WORKER_S_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.JobSpec
    wait_for_worker_s: float
    worker: str
    labels: _containers.ScalarMap[str, str]
    job_id: str
    def __init__(self, spec: _Optional[_Union[_common_pb2.JobSpec, _Mapping]] = ..., wait_for_worker_s: _Optional[float] = ..., worker: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobQueued(_message.Message):
    __slots__ = ("job_id", "position")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    position: int
    def __init__(self, job_id: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class JobStarted(_message.Message):
    __slots__ = ("job_id", "worker_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("started", "output", "end", "progress", "queued", "refused")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    started: JobStarted
    output: _common_pb2.JobOutput
    end: _common_pb2.JobEnd
    progress: _common_pb2.JobProgress
    queued: JobQueued
    refused: JobRefused
    def __init__(self, started: _Optional[_Union[JobStarted, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.JobOutput, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.JobEnd, _Mapping]] = ..., progress: _Optional[_Union[_common_pb2.JobProgress, _Mapping]] = ..., queued: _Optional[_Union[JobQueued, _Mapping]] = ..., refused: _Optional[_Union[JobRefused, _Mapping]] = ...) -> None: ...

class JobsRequest(_message.Message):
    __slots__ = ("submit", "cancel", "taken")
    SUBMIT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TAKEN_FIELD_NUMBER: _ClassVar[int]
    submit: _containers.RepeatedCompositeFieldContainer[RunJobRequest]
    cancel: _containers.RepeatedScalarFieldContainer[str]
    taken: _containers.RepeatedCompositeFieldContainer[JobTaken]
    def __init__(self, submit: _Optional[_Iterable[_Union[RunJobRequest, _Mapping]]] = ..., cancel: _Optional[_Iterable[str]] = ..., taken: _Optional[_Iterable[_Union[JobTaken, _Mapping]]] = ...) -> None: ...

class JobTaken(_message.Message):
    __slots__ = ("job_id", "bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    bytes: int
    def __init__(self, job_id: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class JobsReply(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ...) -> None: ...

class JobRefused(_message.Message):
    __slots__ = ("job_id", "code", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    code: int
    message: str
    def __init__(self, job_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
