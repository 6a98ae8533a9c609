from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_SUCCEEDED: _ClassVar[EndReason]
    END_REASON_MODEL_ERROR: _ClassVar[EndReason]
    END_REASON_TIMEOUT: _ClassVar[EndReason]
    END_REASON_CANCELLED: _ClassVar[EndReason]
    END_REASON_WORKER_LOST: _ClassVar[EndReason]
    END_REASON_EXECUTOR_CRASHED: _ClassVar[EndReason]
    END_REASON_MEMORY_LIMIT: _ClassVar[EndReason]
    END_REASON_DRAINED: _ClassVar[EndReason]
    END_REASON_INCOMPATIBLE_ENVIRONMENT: _ClassVar[EndReason]
    END_REASON_NO_WORKER: _ClassVar[EndReason]
END_REASON_UNSPECIFIED: EndReason
END_REASON_SUCCEEDED: EndReason
END_REASON_MODEL_ERROR: EndReason
END_REASON_TIMEOUT: EndReason
END_REASON_CANCELLED: EndReason
END_REASON_WORKER_LOST: EndReason
END_REASON_EXECUTOR_CRASHED: EndReason
END_REASON_MEMORY_LIMIT: EndReason
END_REASON_DRAINED: EndReason
END_REASON_INCOMPATIBLE_ENVIRONMENT: EndReason
END_REASON_NO_WORKER: EndReason

class ArtifactRef(_message.Message):
    __slots__ = ("blake3", "size", "inline")
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    blake3: str
    size: int
    inline: bytes
    def __init__(self, blake3: _Optional[str] = ..., size: _Optional[int] = ..., inline: _Optional[bytes] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "interpreter", "python_version", "platform", "uname", "pid", "started_at", "hostname", "giskard_version", "packages", "hub_address", "name", "labels", "environment")
    class PackagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERPRETER_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    UNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    GISKARD_VERSION_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    HUB_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    interpreter: str
    python_version: str
    platform: str
    uname: Uname
    pid: int
    started_at: float
    hostname: str
    giskard_version: str
    packages: _containers.ScalarMap[str, str]
    hub_address: str
    name: str
    labels: _containers.ScalarMap[str, str]
    environment: str
    def __init__(self, worker_id: _Optional[str] = ..., interpreter: _Optional[str] = ..., python_version: _Optional[str] = ..., platform: _Optional[str] = ..., uname: _Optional[_Union[Uname, _Mapping]] = ..., pid: _Optional[int] = ..., started_at: _Optional[float] = ..., hostname: _Optional[str] = ..., giskard_version: _Optional[str] = ..., packages: _Optional[_Mapping[str, str]] = ..., hub_address: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., environment: _Optional[str] = ...) -> None: ...

class Uname(_message.Message):
    __slots__ = ("system", "node", "release", "version", "machine")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    system: str
    node: str
    release: str
    version: str
    machine: str
    def __init__(self, system: _Optional[str] = ..., node: _Optional[str] = ..., release: _Optional[str] = ..., version: _Optional[str] = ..., machine: _Optional[str] = ...) -> None: ...

class PredictJob(_message.Message):
    __slots__ = ("model", "data", "method")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    model: ArtifactRef
    data: ArtifactRef
    method: str
    def __init__(self, model: _Optional[_Union[ArtifactRef, _Mapping]] = ..., data: _Optional[_Union[ArtifactRef, _Mapping]] = ..., method: _Optional[str] = ...) -> None: ...

class InfoJob(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Argument(_message.Message):
    __slots__ = ("value", "pickled")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PICKLED_FIELD_NUMBER: _ClassVar[int]
    value: ArtifactRef
    pickled: bool
    def __init__(self, value: _Optional[_Union[ArtifactRef, _Mapping]] = ..., pickled: _Optional[bool] = ...) -> None: ...

class CallJob(_message.Message):
    __slots__ = ("function", "args", "kwargs")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Argument
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Argument, _Mapping]] = ...) -> None: ...
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    function: ArtifactRef
    args: _containers.RepeatedCompositeFieldContainer[Argument]
    kwargs: _containers.MessageMap[str, Argument]
    def __init__(self, function: _Optional[_Union[ArtifactRef, _Mapping]] = ..., args: _Optional[_Iterable[_Union[Argument, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, Argument]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("predict", "info", "call", "timeout_s", "progress", "requirements")
    PREDICT_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    predict: PredictJob
    info: InfoJob
    call: CallJob
    timeout_s: float
    progress: bool
    requirements: Requirements
    def __init__(self, predict: _Optional[_Union[PredictJob, _Mapping]] = ..., info: _Optional[_Union[InfoJob, _Mapping]] = ..., call: _Optional[_Union[CallJob, _Mapping]] = ..., timeout_s: _Optional[float] = ..., progress: _Optional[bool] = ..., requirements: _Optional[_Union[Requirements, _Mapping]] = ...) -> None: ...

class Requirements(_message.Message):
    __slots__ = ("python", "cloudpickle", "distributions")
    class DistributionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    CLOUDPICKLE_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    python: str
    cloudpickle: str
    distributions: _containers.ScalarMap[str, str]
    def __init__(self, python: _Optional[str] = ..., cloudpickle: _Optional[str] = ..., distributions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EnvironmentDifference(_message.Message):
    __slots__ = ("worker", "what", "required", "found", "blocking")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    worker: str
    what: str
    required: str
    found: str
    blocking: bool
    def __init__(self, worker: _Optional[str] = ..., what: _Optional[str] = ..., required: _Optional[str] = ..., found: _Optional[str] = ..., blocking: _Optional[bool] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job_id", "done", "total")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    done: int
    total: int
    def __init__(self, job_id: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class JobOutput(_message.Message):
    __slots__ = ("job_id", "chunk")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    chunk: bytes
    def __init__(self, job_id: _Optional[str] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class JobFailure(_message.Message):
    __slots__ = ("type", "message", "traceback", "signal", "differences")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    traceback: str
    signal: int
    differences: _containers.RepeatedCompositeFieldContainer[EnvironmentDifference]
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., signal: _Optional[int] = ..., differences: _Optional[_Iterable[_Union[EnvironmentDifference, _Mapping]]] = ...) -> None: ...

class JobSuccess(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: ArtifactRef
    def __init__(self, result: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class JobEnd(_message.Message):
    __slots__ = ("job_id", "success", "failure", "reason", "logs", "differences")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    success: JobSuccess
    failure: JobFailure
    reason: EndReason
    logs: bytes
    differences: _containers.RepeatedCompositeFieldContainer[EnvironmentDifference]
    def __init__(self, job_id: _Optional[str] = ..., success: _Optional[_Union[JobSuccess, _Mapping]] = ..., failure: _Optional[_Union[JobFailure, _Mapping]] = ..., reason: _Optional[_Union[EndReason, str]] = ..., logs: _Optional[bytes] = ..., differences: _Optional[_Iterable[_Union[EnvironmentDifference, _Mapping]]] = ...) -> None: ...
