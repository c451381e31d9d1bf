"""Sources of EEG samples: EDF replay and LSL inlet. Each yields Block / Gap / StreamStatus. Internal (the
public API is ``seizurewatch.api``)."""

from __future__ import annotations

from typing import Protocol

from seizurewatch.types import Annotation, Block, Gap, RateStatus, StreamStatus

SourceItem = Block | Gap | StreamStatus | RateStatus


class Source(Protocol):
    channels: tuple[str, ...]
    rate: float
    annotations: tuple[Annotation, ...]
    description: str

    async def open(self) -> None: ...

    def items(self): ...  # AsyncIterator[SourceItem]

    async def close(self) -> None: ...
