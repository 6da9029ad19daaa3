"""The radix passes as a small C kernel (OpenMP), compiled once per machine with the system C
compiler and loaded with ctypes: about a second to compile, cached on disk by source hash.

Why C and not torch: a histogram is a scatter of increments; torch's CPU ``bincount`` and
inductor's scatter are several times slower than one read pass (bench/RESULTS.md), while a
plain loop over per-thread histograms that fit in L2 runs near it. Without a compiler (or
with TADROP_NATIVE=0) ``load()`` returns None and callers take their exact fallback.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* Part p of n entries: [n * p / parts, n * (p + 1) / parts). */
#define PART_LO(n, p, parts) ((int64_t)((__int128)(n) * (p) / (parts)))
#define BLOCK 4096

static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* The entries x[i] the fp32 passes rank, by INPUTS (a -D flag: one build per value):
   0: one fp32 tensor a; 1: fp32 a - b; 2: bf16 a - bf16 b, both widened to float32 first.
   1 and 2 are the task vector tau = theta_task - theta_base in float32, computed in registers
   as tadrop.task_vectors computes it (torch.sub into float32), never written to memory. */
#if INPUTS == 2
typedef uint16_t input_t;
static inline float widen(uint16_t h) { return bits_to_float((uint32_t)h << 16); }
static inline float entry(const input_t *a, const input_t *b, int64_t i) {
    return widen(a[i]) - widen(b[i]);
}
#else
typedef float input_t;
static inline float entry(const input_t *a, const input_t *b, int64_t i) {
    return INPUTS == 1 ? a[i] - b[i] : a[i];
}
#endif
static inline uint32_t abs_bits(const input_t *a, const input_t *b, int64_t i) {
    return float_bits(entry(a, b, i)) & 0x7fffffffu;
}

/* Pass 1: power sums of (x - shift) in float64, sum |x|, sum x^2, zeros, NaNs, and a
   histogram of the top 16 bits of |x| (bits >> 15, 65536 bins). Each part keeps COPIES
   histograms (hist[part][copy][bin], entry i counted in copy i % COPIES): neighbours that
   fall in the same bin do not wait on each other's increment. sums: 6 doubles a part;
   counts: 2. */
#define COPIES 2
void radix_pass1(const input_t *a, const input_t *b, int64_t n, double shift, int parts,
                 uint32_t *hist, double *sums, int64_t *counts) {
    #pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        uint32_t *h = hist + (int64_t)p * COPIES * 65536, *h1 = h + 65536;
        memset(h, 0, sizeof(uint32_t) * COPIES * 65536);
        double s1 = 0, s2 = 0, s3 = 0, s4 = 0, sa = 0, sq = 0;
        int64_t zeros = 0, nans = 0;
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        for (int64_t c = lo; c < hi; c += BLOCK) {
            const int64_t e = c + BLOCK < hi ? c + BLOCK : hi;
            #pragma omp simd reduction(+ : s1, s2, s3, s4, sa, sq, zeros, nans)
            for (int64_t i = c; i < e; i++) {
                const float f = entry(a, b, i);
                double v = f, d = v - shift, d2 = d * d;
                s1 += d; s2 += d2; s3 += d2 * d; s4 += d2 * d2;
                sa += v < 0 ? -v : v; sq += v * v;
                zeros += f == 0.0f; nans += f != f;
            }
            int64_t i = c;
            for (; i + 1 < e; i += 2) {
                h[abs_bits(a, b, i) >> 15]++;
                h1[abs_bits(a, b, i + 1) >> 15]++;
            }
            if (i < e) h[abs_bits(a, b, i) >> 15]++;
        }
        double *s = sums + 6 * p;
        s[0] = s1; s[1] = s2; s[2] = s3; s[3] = s4; s[4] = sa; s[5] = sq;
        counts[2 * p] = zeros; counts[2 * p + 1] = nans;
    }
}

/* Pass 2: inside the wanted buckets (slot[bucket] < slots), a histogram of the next sub
   bits: hist2[part][slot][bits 14..15-sub]. Unwanted buckets map to slot == slots and are
   counted in that spare row, which the caller ignores: with ~half the entries in wanted
   buckets, skipping them by a branch mispredicted so often that the pass took 83 ms instead
   of 7 ms on 16M heavy-tailed entries. */
void radix_pass2(const input_t *a, const input_t *b, int64_t n, int parts, const int16_t *slot,
                 int slots, int sub, uint32_t *hist2) {
    const int64_t width = (int64_t)1 << sub, rows = (slots + 1) * width;
    const int shift = 15 - sub;
    #pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        uint32_t *h = hist2 + p * rows;
        memset(h, 0, sizeof(uint32_t) * rows);
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        for (int64_t i = lo; i < hi; i++) {
            const uint32_t bits = abs_bits(a, b, i);
            h[slot[bits >> 15] * width + ((bits >> shift) & (width - 1))]++;
        }
    }
}

/* Pass 3: inside the sub-buckets flagged in the bitmap flags (bit slot * width + sub), a
   histogram of the remaining low 15 - sub bits: hist3[part][row[that bit]][low], at full
   resolution, so every rank's value is read from counts (no entry is collected, and many
   equal entries cost nothing more). Few entries are flagged (~1% on smooth data): the
   branch skips the rest at the price of a rare mispredict. */
void radix_pass3(const input_t *a, const input_t *b, int64_t n, int parts, const int16_t *slot,
                 int sub, const uint8_t *flags, const int16_t *row, int rows,
                 uint32_t *hist3) {
    const int64_t width = (int64_t)1 << sub, lows = (int64_t)1 << (15 - sub);
    const int shift = 15 - sub;
    #pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        uint32_t *h = hist3 + p * rows * lows;
        memset(h, 0, sizeof(uint32_t) * rows * lows);
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        for (int64_t i = lo; i < hi; i++) {
            const uint32_t bits = abs_bits(a, b, i);
            const int64_t at = slot[bits >> 15] * width + ((bits >> shift) & (width - 1));
            if ((flags[at >> 3] >> (at & 7)) & 1)
                h[row[at] * lows + (bits & (lows - 1))]++;
        }
    }
}

/* Pass 3 when the flagged sub-buckets hold few entries: those entries, as |x|, copied to
   out + start[part] (pass 2 counted how many each part holds), to be sorted by the caller:
   no 2^(15 - sub)-bin histogram to clear and reduce per rank. */
void radix_collect(const input_t *a, const input_t *b, int64_t n, int parts, const int16_t *slot,
                   int sub, const uint8_t *flags, const int64_t *start, float *out) {
    const int64_t width = (int64_t)1 << sub;
    const int shift = 15 - sub;
    #pragma omp parallel for schedule(static, 1) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        float *o = out + start[p];
        int64_t k = 0;
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        for (int64_t i = lo; i < hi; i++) {
            const uint32_t bits = abs_bits(a, b, i);
            const int64_t at = slot[bits >> 15] * width + ((bits >> shift) & (width - 1));
            if ((flags[at >> 3] >> (at & 7)) & 1) o[k++] = bits_to_float(bits);
        }
    }
}

/* One bf16 tensor: a histogram of all 16 bits, sign included (hist[part][copy][65536]):
   each bin is one value, so the moments come from the histogram and the loop only counts. */
void bf16_histogram(const uint16_t *u, int64_t n, int parts, uint32_t *hist) {
    #pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        uint32_t *h = hist + (int64_t)p * COPIES * 65536, *h1 = h + 65536;
        memset(h, 0, sizeof(uint32_t) * COPIES * 65536);
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        int64_t i = lo;
        for (; i + 1 < hi; i += 2) {
            h[u[i]]++;
            h1[u[i + 1]]++;
        }
        if (i < hi) h[u[i]]++;
    }
}
/* The nonzero entries of x (float32; -0.0 is a zero) copied in order to out, which holds at
   least (nonzero entries + 1) floats: every entry is stored and the position advances past
   the nonzero ones only (no branch). Returns how many were kept. */
int64_t compact_nonzero(const float *restrict x, int64_t n, float *restrict out) {
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        out[kept] = x[i];
        kept += (float_bits(x[i]) & 0x7fffffffu) != 0;
    }
    return kept;
}

/* Magnitudes bucketed by bit pattern, for one threshold over many tensors
   (tadrop.sparsify.global_scope): with bucket < 0 the top 16 bits of |x| (hist[part][bits >>
   15], 65536 bins); otherwise the low 15 bits of the entries inside that bucket
   (hist[part][bits & 0x7fff], 32768 bins) and the count of entries in lower buckets
   (below[part]). One part runs without an OpenMP team. */
void abs_histogram(const input_t *a, const input_t *b, int64_t n, int64_t bucket, int parts,
                   uint32_t *hist, int64_t *below) {
    const int64_t bins = bucket < 0 ? 65536 : 32768;
    #pragma omp parallel for schedule(static, 1) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        uint32_t *h = hist + (int64_t)p * bins;
        memset(h, 0, sizeof(uint32_t) * bins);
        int64_t lower = 0;
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        if (bucket < 0) {
            for (int64_t i = lo; i < hi; i++) h[abs_bits(a, b, i) >> 15]++;
        } else {
            const uint32_t wanted = (uint32_t)bucket;
            for (int64_t i = lo; i < hi; i++) {
                const uint32_t bits = abs_bits(a, b, i), top = bits >> 15;
                lower += top < wanted;
                if (top == wanted) h[bits & 0x7fffu]++;
            }
        }
        below[p] = lower;
    }
}

/* The keep mask of a magnitude cut: keep[i] = |x| > threshold (compared as bit patterns, so
   no NaN may be left); float64 sums of x^2 over the kept entries and over all entries
   (sums[2 part], sums[2 part + 1]); counts of |x| < threshold and |x| == threshold
   (counts[2 part], counts[2 part + 1]): the caller then knows how many ties at the threshold
   to keep (in flat order) without another pass. A dropped entry is zeroed by a bit mask,
   not a select (gcc leaves a select feeding a float64 sum unvectorised: 30x slower here).
   One part runs without an OpenMP team (a team's wake-up can cost milliseconds). */
void abs_keep_mask(const input_t *restrict a, const input_t *restrict b, int64_t n,
                   float threshold, int parts, uint8_t *restrict keep, double *sums,
                   int64_t *counts) {
    const uint32_t cut = float_bits(threshold) & 0x7fffffffu;
    #pragma omp parallel for schedule(static, 1) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        double kept = 0, total = 0;
        int64_t below = 0, ties = 0;
        const int64_t lo = PART_LO(n, p, parts), hi = PART_LO(n, p + 1, parts);
        for (int64_t c = lo; c < hi; c += BLOCK) {
            const int64_t e = c + BLOCK < hi ? c + BLOCK : hi;
            int32_t block_below = 0, block_ties = 0;
            #pragma omp simd reduction(+ : kept, total, block_below, block_ties)
            for (int64_t i = c; i < e; i++) {
                const float f = entry(a, b, i);
                const uint32_t raw = float_bits(f), bits = raw & 0x7fffffffu;
                const uint32_t mask = 0u - (uint32_t)(bits > cut);
                const double v = f, kept_v = bits_to_float(raw & mask);
                keep[i] = bits > cut;
                kept += kept_v * kept_v; total += v * v;
                block_below += bits < cut; block_ties += bits == cut;
            }
            below += block_below; ties += block_ties;
        }
        sums[2 * p] = kept; sums[2 * p + 1] = total;
        counts[2 * p] = below; counts[2 * p + 1] = ties;
    }
}
"""

# INPUTS of each build (see SOURCE): what the fp32 passes read.
ONE_TENSOR, FP32_PAIR, BF16_PAIR = 0, 1, 2
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
_lock = threading.Lock()
_state: dict[int, ctypes.CDLL | None] = {}


def _machine() -> str:
    """What -march=native compiled for: the CPU's model and flags (a shared cache folder
    must not hand one machine's build to another)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    return "".join(line for line in lines if line.startswith(("model name", "flags")))[:8192]


def _cache_dir() -> Path:
    """Builds are machine-local: the user's temporary folder (a cleaned one costs a rebuild)."""
    return Path(tempfile.gettempdir()) / f"tadrop-{os.getuid()}" / "kernels"


def _compile(target: Path, inputs: int = ONE_TENSOR) -> None:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "radix.c"
        source.write_text(SOURCE)
        built = Path(work) / "radix.so"
        subprocess.run(
            [compiler, *_FLAGS, f"-DINPUTS={inputs}", str(source), "-o", str(built)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(built, target)  # atomic: a concurrent process sees all of it or nothing


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    library.radix_pass1.argtypes = [p, p, i64, f64, i32, p, p, p]
    library.radix_pass2.argtypes = [p, p, i64, i32, p, i32, i32, p]
    library.radix_pass3.argtypes = [p, p, i64, i32, p, i32, p, p, i32, p]
    library.bf16_histogram.argtypes = [p, i64, i32, p]
    library.abs_keep_mask.argtypes = [p, p, i64, ctypes.c_float, i32, p, p, p]
    library.abs_histogram.argtypes = [p, p, i64, i64, i32, p, p]
    library.radix_collect.argtypes = [p, p, i64, i32, p, i32, p, p, p]
    library.compact_nonzero.argtypes = [p, i64, p]
    library.compact_nonzero.restype = i64
    functions = (
        library.radix_pass1, library.radix_pass2, library.radix_pass3,
        library.bf16_histogram, library.abs_keep_mask, library.abs_histogram,
        library.radix_collect,
    )  # fmt: skip
    for function in functions:
        function.restype = None
    return library


def load(inputs: int = ONE_TENSOR) -> ctypes.CDLL | None:
    """The kernel built for ``inputs`` (compiled on first use), or None where that is
    impossible."""
    with _lock:
        if inputs in _state:
            return _state[inputs]  # type: ignore[return-value]
        library = None
        if os.environ.get("TADROP_NATIVE", "1") != "0":
            key = f"{SOURCE} {' '.join(_FLAGS)} {inputs} {_machine()}"
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            target = _cache_dir() / f"radix-{digest}.so"
            try:
                if not target.exists():
                    _compile(target, inputs)
                library = _bind(ctypes.CDLL(str(target)))
            except (OSError, subprocess.SubprocessError) as error:
                warnings.warn(
                    f"tadrop: could not build the statistics kernel ({error}); statistics take a "
                    "slower exact route (a full sort, or the task vector built first).",
                    RuntimeWarning,
                    stacklevel=2,
                )
        _state[inputs] = library
        return library
