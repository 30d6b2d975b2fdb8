"""What a reader weights file says of itself (``ragmem.reader_model`` writes and checks
it), apart from the network so that reading it needs no torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ragmem.errors import RagmemError

FORMAT = 1


@dataclass(frozen=True)
class ReaderSchema:
    """What a weights file says of itself, checked on load."""

    format: int
    base_sha256: str
    tuning: str  # "full" (embeddings frozen), "lora" (merged) or "topN"
    max_length: int
    stride: int
    abstain_below: float  # the no-answer threshold chosen on train questions
    trained: str  # the command and data that made it (provenance, not parsed)
    # "piece": spans compare by their probability in their own piece; "shared": trained
    # with shared normalisation, they compare by raw logits across pieces.
    ranking: str = "piece"

    def metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in vars(self).items()}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str) -> ReaderSchema:
        try:
            schema = cls(format=int(meta["format"]), base_sha256=meta["base_sha256"],
                         tuning=meta["tuning"], max_length=int(meta["max_length"]),
                         stride=int(meta["stride"]),
                         abstain_below=float(meta["abstain_below"]),
                         trained=meta.get("trained", ""),
                         ranking=meta.get("ranking", "piece"))
            if schema.ranking not in ("piece", "shared"):
                raise ValueError(f"ranking {schema.ranking!r}")
        except (KeyError, ValueError) as error:
            raise RagmemError(f"the reader weights {where} lack a valid schema ({error}); "
                              "reinstall ragmem or retrain: python -m ragmem.training.reader"
                              ) from error
        return schema
