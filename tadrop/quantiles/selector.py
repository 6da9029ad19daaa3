"""The selector: exact order statistics of one tensor, and the keep mask that drops its n
smallest entries, by counting passes over sampled brackets (large CPU tensors) or by a
whole-tensor route (``selection.py``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from tadrop.quantiles import passes, selection, settings
from tadrop.quantiles.brackets import EMPTY_SLOT, Brackets, Collected, Slot
from tadrop.quantiles.common import exact_bounds, interpolation_ranks, raise_for_nans, work_dtype
from tadrop.quantiles.kernel import COMPILER


class Selector:
    """Exact order statistics of one flattened tensor (or of its absolute values)."""

    def __init__(self, flat: torch.Tensor, *, use_abs: bool) -> None:
        self.flat = flat
        self.use_abs = use_abs
        self.n = flat.numel()
        self.work_dtype = work_dtype(flat.dtype)
        self.brackets = Brackets(flat, use_abs=use_abs)

    # -- order statistics --------------------------------------------------------------

    def sorts_everything(self) -> bool:
        """Whole-tensor numpy route or the counting pass? numpy beats the pass on the CPU up
        to a few million entries (0.5 ms vs ~280 ms for the eager pass at 2^17.6 entries)."""
        n = self.n
        if self.flat.is_cuda:
            return n <= settings.DIRECT_MAX_NUMEL
        if n <= settings.SORT_MAX_NUMEL:
            return True
        if n < settings.FUSED_MIN_NUMEL or not COMPILER.enabled:
            return n <= settings.SORT_WITHOUT_COMPILER_MAX_NUMEL
        return n <= settings.SORT_BEFORE_COMPILE_NUMEL and not COMPILER.paid_off(n)

    def order_statistics(self, ranks: list[int]) -> dict[int, float]:
        ranks = sorted(set(ranks))
        if self.sorts_everything():
            return selection.from_full_sort(self.flat, self.use_abs, ranks)
        groups = self.group_ranks(ranks)
        if len(groups) > settings.SLOTS:
            return selection.from_full_sort(self.flat, self.use_abs, ranks)
        found: dict[int, float] = {}
        for attempt in range(settings.attempts()):
            pending = [g for g in groups if any(k not in found for k in g)]
            if not pending:
                break
            slots = self._run_pass([self.brackets.bracket(g[0], g[-1], attempt) for g in pending])
            for group, slot in zip(pending, slots, strict=True):
                found.update({k: v for k in group if (v := slot.value_at(k)) is not None})
        if len(found) < len(ranks):
            raise RuntimeError("quantile engine: brackets did not converge (a bug; please report).")
        return found

    def group_ranks(self, ranks: list[int]) -> list[list[int]]:
        """Ranks whose first-attempt brackets overlap share one slot."""
        groups: list[list[int]] = []
        last_hi = -math.inf
        for rank in ranks:
            lo, hi = self.brackets.sample_bounds(rank, rank, settings.BRACKET_SIGMAS[0])
            if groups and lo <= last_hi:
                groups[-1].append(rank)
                last_hi = max(last_hi, hi)
            else:
                groups.append([rank])
                last_hi = hi
        return groups

    # -- dropping the smallest ---------------------------------------------------------

    def drop_smallest(
        self, drop_count_range, q_levels: list[float], keep_flat: torch.Tensor, with_sums=True
    ):
        """Write into keep_flat the mask that drops the n_drop smallest entries.

        ``drop_count_range(q_bounds)`` gives (least, most) n_drop from [low, high] bounds of the
        quantiles at ``q_levels``.  Returns ({rank: value} for those quantiles, sum of squares
        of all entries, sum of squares of the kept entries), both in float64 (the sort path
        leaves them 0.0 when ``with_sums`` is False: callers that only want the mask).
        """
        if self.sorts_everything():
            if selection.numpy_sorts(keep_flat):
                return selection.drop_by_numpy_select(
                    self.flat, self.use_abs, drop_count_range, q_levels, keep_flat, with_sums
                )
            return selection.drop_by_full_sort(
                self.flat, self.use_abs, drop_count_range, q_levels, keep_flat
            )
        q_ranks = [interpolation_ranks([q], self.n) for q in q_levels]
        found: dict[int, float] = {}
        for attempt in range(settings.attempts() + 1):
            pending = [r for r in q_ranks if any(k not in found for k in r)]
            slots = [self.brackets.bracket(r[0], r[-1], attempt) for r in pending]
            q_bounds = [
                self.brackets.quantile_bounds(q, r, found, attempt)
                for q, r in zip(q_levels, q_ranks, strict=True)
            ]
            least, most = drop_count_range(q_bounds)
            drop_slot = None
            if most == 0 or least == self.n:
                keep_hi = -math.inf if most == 0 else math.inf  # keep all / drop all
            else:
                drop_slot = self.brackets.bracket(max(least - 1, 0), most - 1, attempt)
                slots.append(drop_slot)
                keep_hi = drop_slot[1]
            results, sumsq_total, sumsq_kept = self._run_pass(
                slots, keep_hi=keep_hi, keep_flat=keep_flat, with_sums=True
            )
            for ranks, slot in zip(pending, results, strict=False):  # + drop slot
                found.update({k: v for k in ranks if (v := slot.value_at(k)) is not None})
            if any(k not in found for r in q_ranks for k in r):
                continue
            exact = exact_bounds(q_levels, self.n, found)
            n_drop = drop_count_range(exact)[0]
            if n_drop == 0:
                if keep_hi != -math.inf:
                    keep_flat.fill_(True)
                return found, sumsq_total, sumsq_total
            if n_drop == self.n:
                keep_flat.fill_(False)
                return found, sumsq_total, 0.0
            if drop_slot is None:
                continue
            kept_extra = self._fix_drop_slot(results[-1], n_drop, keep_flat)
            if kept_extra is not None:
                return found, sumsq_total, sumsq_kept + kept_extra
        raise RuntimeError("quantile engine: brackets did not converge (a bug; please report).")

    def _fix_drop_slot(self, slot: Slot, n_drop: int, keep_flat: torch.Tensor) -> float | None:
        """Decide the collected entries; return the sum of squares kept inside the bracket.

        The pass kept exactly the entries above the bracket; every collected entry gets
        "value > threshold" (right for all of them), then ties at the threshold are kept from
        the (n_drop - entries below it)-th on, in flat order.
        """
        threshold = slot.value_at(n_drop - 1)
        if threshold is None:
            return None
        values, indices = slot.collected.values, slot.collected.indices
        keep_collected = values > threshold
        ties_total = slot.n_upto_lo - slot.n_below  # entries equal to lo
        if threshold != slot.lo:  # all ties are collected
            below = slot.n_upto_lo + int(
                np.searchsorted(slot.collected.sorted_values[slot.first :], threshold)
            )
            tie_positions = np.flatnonzero(values == threshold)
            keep_collected[tie_positions[n_drop - below :]] = True
            ties_total = 0
        if keep_flat.is_cuda:
            positions = torch.from_numpy(indices).to(keep_flat.device)
            keep_flat.index_put_(
                (positions,), torch.from_numpy(keep_collected).to(keep_flat.device)
            )
        else:
            keep_flat.numpy()[indices] = keep_collected
        ties_kept = 0
        if threshold == slot.lo:  # ties at lo were not collected: find them in flat order
            ties_kept = ties_total - (n_drop - slot.n_below)
            self._keep_ties_after(threshold, n_drop - slot.n_below, keep_flat)
        inside = values[keep_collected & (values <= slot.hi)].astype(np.float64)
        return ties_kept * float(threshold) ** 2 + float(np.dot(inside, inside))

    def _keep_ties_after(self, value: float, n_skip: int, keep_flat: torch.Tensor) -> None:
        """Set keep for the entries equal to ``value`` after the first ``n_skip`` (flat order)."""
        seen = 0
        for start in range(0, self.n, settings.EAGER_CHUNK):
            stop = min(start + settings.EAGER_CHUNK, self.n)
            ties = self._magnitude_chunk(start, stop) == value
            if seen < n_skip:
                count = int(ties.sum().item())
                if seen + count <= n_skip:
                    seen += count
                    continue
                first_kept = int(ties.nonzero()[n_skip - seen, 0].item())
                ties[:first_kept] = False
                seen = n_skip
            keep_flat[start:stop] |= ties

    # -- the pass over the data --------------------------------------------------------

    def _magnitude_chunk(self, start: int, stop: int) -> torch.Tensor:
        work = self.flat[start:stop].to(self.work_dtype)
        return work.abs() if self.use_abs else work

    def _run_pass(self, brackets, *, keep_hi=None, keep_flat=None, with_sums=False):
        """One pass: counts and collected entries of each bracket; optionally the keep mask."""
        padded = list(brackets) + [EMPTY_SLOT] * (settings.SLOTS - len(brackets))
        bounds_list = [lo for lo, _ in padded] + [hi for _, hi in padded]
        bounds_list.append(math.inf if keep_hi is None else keep_hi)
        bounds = torch.tensor(bounds_list, dtype=self.work_dtype, device=self.flat.device)
        raw = passes.fused_or_eager_pass(self.flat, bounds, self.use_abs, keep_flat)
        if math.isnan(raw.sumsq_total):
            raise_for_nans(self.flat)
        collected = Collected(raw.values, raw.indices, np.sort(raw.values))
        slots = []
        for j, (lo, hi) in enumerate(brackets):
            first = int(np.searchsorted(collected.sorted_values, lo, side="right"))
            stop = int(np.searchsorted(collected.sorted_values, hi, side="right"))
            slot = Slot(
                lo, hi, raw.counts[j], raw.counts[settings.SLOTS + j], collected, first, stop
            )
            if lo <= hi:  # a real bracket: its bounds now have exact counts
                self.brackets.known.append((lo, slot.n_upto_lo))
                self.brackets.known.append((hi, slot.n_upto_lo + stop - first))
            slots.append(slot)
        if with_sums:
            return slots, raw.sumsq_total, raw.sumsq_kept
        return slots
