"""Core data types: one domain's interactions, a cross-domain pair, and a protocol split.

All arrays are numpy (host side); models receive them through `transferjax.data.batches`.
Ids are 0-based dense int32 indices; the raw ids a loader read are kept in `user_ids` /
`item_ids` (index -> raw id) so results can be mapped back to the files.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transferjax.errors import DataError


def _as(arr, dtype, name: str) -> np.ndarray:
    out = np.asarray(arr)
    if out.ndim != 1:
        raise DataError(f"Interactions.{name} must be 1-D, got shape {out.shape}")
    return out.astype(dtype, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Interactions:
    """Interactions of one domain as parallel arrays.

    Attributes:
      user: int32[n] dense user index in [0, n_users).
      item: int32[n] dense item index in [0, n_items).
      rating: float32[n] rating (1.0 for implicit feedback); never NaN.
      n_users: number of user rows (may exceed the users seen in `user`).
      n_items: number of item rows.
      timestamp: optional int64[n].
      user_ids: optional array[n_users] of raw user ids (index -> raw id).
      item_ids: optional array[n_items] of raw item ids.
      name: domain name, used in messages.
      notes: what the loader changed about the file's ids (e.g. sparse ids remapped densely),
        one line each; `describe` shows them.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    n_users: int
    n_items: int
    timestamp: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    name: str = "domain"
    notes: tuple = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("notes", tuple(str(n) for n in self.notes))
        set_("user", _as(self.user, np.int32, "user"))
        set_("item", _as(self.item, np.int32, "item"))
        set_("rating", _as(self.rating, np.float32, "rating"))
        set_("n_users", int(self.n_users))
        set_("n_items", int(self.n_items))
        n = self.user.shape[0]
        if self.item.shape[0] != n or self.rating.shape[0] != n:
            raise DataError(
                f"{self.name}: user/item/rating lengths differ "
                f"({n}, {self.item.shape[0]}, {self.rating.shape[0]})"
            )
        if self.timestamp is not None:
            set_("timestamp", _as(self.timestamp, np.int64, "timestamp"))
            if self.timestamp.shape[0] != n:
                raise DataError(f"{self.name}: timestamp length {self.timestamp.shape[0]} != {n}")
        if n:
            if self.user.min() < 0 or self.user.max() >= self.n_users:
                raise DataError(f"{self.name}: user index outside [0, {self.n_users})")
            if self.item.min() < 0 or self.item.max() >= self.n_items:
                raise DataError(f"{self.name}: item index outside [0, {self.n_items})")
        if not np.all(np.isfinite(self.rating)):
            bad = int(np.flatnonzero(~np.isfinite(self.rating))[0])
            raise DataError(f"{self.name}: non-finite rating at row {bad}")
        for k, size in (("user_ids", self.n_users), ("item_ids", self.n_items)):
            ids = getattr(self, k)
            if ids is not None and len(ids) != size:
                raise DataError(f"{self.name}: {k} has {len(ids)} entries, expected {size}")

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def select(self, mask_or_index) -> Interactions:
        """Rows picked by a boolean mask or an index array; id spaces are unchanged."""
        idx = np.asarray(mask_or_index)
        ts = None if self.timestamp is None else self.timestamp[idx]
        return dataclasses.replace(
            self, user=self.user[idx], item=self.item[idx], rating=self.rating[idx], timestamp=ts
        )

    def users_present(self) -> np.ndarray:
        """int32[k] sorted unique user indices that have at least one interaction."""
        return np.unique(self.user)

    def user_counts(self) -> np.ndarray:
        """int64[n_users] interactions per user."""
        return np.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """int64[n_items] interactions per item."""
        return np.bincount(self.item, minlength=self.n_items)

    @property
    def density(self) -> float:
        return len(self) / max(1, self.n_users * self.n_items)

    @property
    def implicit(self) -> bool:
        return bool(len(self) == 0 or np.all(self.rating == 1.0))

    def fingerprint(self) -> str:
        """sha256 over the interaction arrays (not the raw id maps)."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.user, self.item, self.rating):
            h.update(np.ascontiguousarray(a))  # the buffer, not a copy (memmaps stay mapped)
        h.update(f"{self.n_users},{self.n_items}".encode())
        return h.hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class CrossDomainData:
    """A source and a target domain and the users they share.

    Attributes:
      source: source-domain interactions (data rich).
      target: target-domain interactions (sparse).
      overlap: int32[n_overlap, 2] explicit user pairs (source user index, target user
        index). Equal integers in the two domains never mean the same person unless listed.
      item_overlap: int32[m, 2] explicit item pairs (source item, target item), e.g. the same
        movie in ML-1M and ML-100k; empty when the domains share no item.
      published: the target domain's released parts {"train", "valid", "test"} when the
        dataset ships its own split (CDRIB; DisenCDR's "train", "test", "test_original");
        `target` then holds every released target interaction.
      name: dataset name.
      info: facts about how the loader read the files (folder, domains, CDRIB's overlap
        threshold), as {label: text}; `describe` shows them.
    """

    source: Interactions
    target: Interactions
    overlap: np.ndarray
    item_overlap: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.int32))
    published: dict | None = None
    name: str = "cross_domain"
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for key, (a, b) in (
            ("overlap", (self.source.n_users, self.target.n_users)),
            ("item_overlap", (self.source.n_items, self.target.n_items)),
        ):
            ov = np.asarray(getattr(self, key), dtype=np.int32).reshape(-1, 2)
            object.__setattr__(self, key, ov)
            if not len(ov):
                continue
            if ov[:, 0].min() < 0 or ov[:, 0].max() >= a:
                raise DataError(f"{self.name}: {key} source index outside [0, {a})")
            if ov[:, 1].min() < 0 or ov[:, 1].max() >= b:
                raise DataError(f"{self.name}: {key} target index outside [0, {b})")
            if len(np.unique(ov[:, 0])) != len(ov) or len(np.unique(ov[:, 1])) != len(ov):
                raise DataError(f"{self.name}: {key} pairs must be one-to-one")
        if len(self.overlap) == 0 and len(self.item_overlap) == 0:
            raise DataError(f"{self.name}: the source and target domains share no user and no item")
        for dom in (self.source, self.target):
            if len(dom) == 0:
                raise DataError(f"{self.name}: domain {dom.name!r} has no interactions")


@dataclasses.dataclass(frozen=True, eq=False)
class HeldOut:
    """Held-out target interactions of a set of evaluated users.

    Attributes:
      pairs: int32[u, 2] one row per evaluated user: (source user index or -1 when the user
        has no source profile, target user index).
      row: int32[n] index into `pairs` of each held-out interaction.
      item: int32[n] target item index.
      rating: float32[n] rating (1.0 for implicit).
      negatives: optional int32[n, n_neg] sampled negative items per held-out interaction,
        fixed by the protocol seed; none is a positive of that user (train or held out).
      exclude: optional target interactions (by target user) whose items are not ranked for
        their user in full ranking: what the user was seen to interact with before this set,
        i.e. its training rows, and for a test set also its valid rows (RecBole's "history"
        items); an item that is also one of the user's held-out items here stays a candidate.
        The protocols keep only the rows of this set's users. None: the evaluator excludes the
        split's `target_train`.
    """

    pairs: np.ndarray
    row: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    negatives: np.ndarray | None = None
    exclude: Interactions | None = None

    def __post_init__(self):
        object.__setattr__(self, "pairs", np.asarray(self.pairs, np.int32).reshape(-1, 2))
        for k, dt in (("row", np.int32), ("item", np.int32), ("rating", np.float32)):
            object.__setattr__(self, k, np.asarray(getattr(self, k), dt))
        if self.negatives is not None:
            object.__setattr__(self, "negatives", np.asarray(self.negatives, np.int32))

    def __len__(self) -> int:
        return int(self.item.shape[0])

    @property
    def source_user(self) -> np.ndarray:
        """int32[n] source user index of each held-out interaction (-1 if none)."""
        return self.pairs[self.row, 0]

    @property
    def target_user(self) -> np.ndarray:
        """int32[n] target user index of each held-out interaction."""
        return self.pairs[self.row, 1]


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """A protocol's view of a `CrossDomainData`: what trains, what selects, what reports.

    Attributes:
      data: the dataset split.
      source_train: source interactions available for training.
      target_train: target interactions available for training (no cold user appears here).
      warm_pairs: int32[w, 2] overlap pairs with training data in both domains (the bridge).
      valid: held-out target interactions used for selection (cold-valid under cold-start).
      test: held-out target interactions used only for the report (cold-test).
      protocol: protocol name, e.g. "cold_start", "published", "warm_ratio", "warm_loo".
      info: extra protocol facts (beta, seed, ...) recorded in the run folder.
    """

    data: CrossDomainData
    source_train: Interactions
    target_train: Interactions
    warm_pairs: np.ndarray
    valid: HeldOut
    test: HeldOut
    protocol: str
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "warm_pairs", np.asarray(self.warm_pairs, np.int32).reshape(-1, 2))
        for name, part in (("valid", self.valid), ("test", self.test)):
            if len(part) == 0:
                raise DataError(f"{self.data.name}/{self.protocol}: the {name} split is empty")
        for name, dom in (("source_train", self.source_train), ("target_train", self.target_train)):
            if len(dom) == 0:
                raise DataError(f"{self.data.name}/{self.protocol}: {name} is empty")
