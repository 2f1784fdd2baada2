# SPDX-License-Identifier: MIT
"""GGUF block quantization in numpy: the reference quantizers and the dequantizers of
docs' quantization note (../shared/notes/quantization.md, cited as "note §N").

Weight types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
Activation types: Q8_0 (reference roundf), Q8_1 (with s), Q8_K (f32 d, int16 bsums).

    quantize(x, type)          float32 [rows, cols] -> uint8 [rows, row_bytes]   (note §4, no imatrix)
    dequantize(q, type, cols)  uint8 [rows, row_bytes] (or flat bytes) -> float32 [rows, cols]  (note §2)
    row_bytes(type, cols), BLOCK[type] = (elements, bytes), GGML_TYPE[type] = ggml id

Arithmetic follows note §4.6: every intermediate is float32 (never float64), products are evaluated
left to right as written in the note (`(w·x)·l`), sums run sequentially in element order (no
pairwise summation), `nint` is ggml's nearest_int (add 1.5·2^23, read the mantissa: ties to even,
and the same result as ggml for out-of-range values), `roundf` rounds ties away from zero, and the
signed maximum is the first element of largest magnitude. Everything is vectorized over blocks:
the element index is the leading axis of the working arrays ([block elements, blocks]), so each
sequential step is one numpy operation over all blocks.

`python3 tools/pith_quant.py` runs the self-checks (round-trip error bounds, and Q8_0 / Q4_0
against a per-element scalar transcription of the formulas).
"""

from __future__ import annotations

import sys

import numpy as np

f32 = np.float32
QK_K = 256
GROUP_MAX_EPS = f32(1e-15)  # note §4.3: groups with max |x| below this are all-zero

# (elements per block, bytes per block), note §1.1
BLOCK = {
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
    "Q8_1": (32, 36), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
    "Q6_K": (256, 210), "Q8_K": (256, 292), "IQ4_NL": (32, 18), "IQ4_XS": (256, 136),
}
GGML_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q8_1": 9,
             "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q8_K": 15, "IQ4_NL": 20,
             "IQ4_XS": 23, "BF16": 30}
WEIGHT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                "IQ4_NL", "IQ4_XS"]
ACTIVATION_TYPES = ["Q8_0", "Q8_1", "Q8_K"]
IQ4_TABLE = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)  # note §1.2
IQ4_TABLE_F = IQ4_TABLE.astype(f32)


def row_bytes(type_name: str, cols: int) -> int:
    elements, nbytes = BLOCK[type_name]
    if cols % elements:
        raise ValueError(f"{type_name}: row length {cols} is not a multiple of {elements}")
    return cols // elements * nbytes


# ---------------------------------------------------------------------------------------------
# scalar helpers (note §0, §4.1)

def nint(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int of float32 values (note §0): ties to even for |v| <= 4194303."""
    biased = np.asarray(v, f32) + f32(12582912.0)
    return (biased.view(np.int32) & 0x007FFFFF) - 0x00400000


def roundf(v: np.ndarray) -> np.ndarray:
    """C roundf (ties away from zero) of float32 values, as float32 (exact: v - trunc(v) is exact)."""
    whole = np.trunc(v)
    frac = v - whole
    return whole + np.where(np.abs(frac) >= f32(0.5), np.sign(v), f32(0)).astype(f32)


def trunc_int(v: np.ndarray) -> np.ndarray:
    """C float -> int conversion (truncation toward zero) as int32."""
    return np.trunc(v).astype(np.int32)


def to_f16_bits(v: np.ndarray) -> np.ndarray:
    """f32 -> f16 round to nearest even (note §4.1), as uint16 bits."""
    return np.asarray(v, f32).astype(np.float16).view(np.uint16)


def from_f16_bits(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, np.uint16).view(np.float16).astype(f32)


def seqsum(terms: np.ndarray, from_first: bool = False) -> np.ndarray:
    """Σ over the leading axis, left to right in float32, starting from 0 (`float s = 0; s += …`)
    or, with from_first, from the first term (`float s = t0; …`: keeps the sign of a -0 term)."""
    acc = terms[0].copy() if from_first else np.zeros(terms.shape[1:], f32)
    for t in terms[1:] if from_first else terms:
        acc = acc + t
    return acc


def signed_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max |x|, the signed value of the first element with that magnitude) over the leading axis,
    as the scan `amax = 0, max = 0; if (|x| > amax) {amax = |x|; max = x;}`: +0 when every |x| is 0."""
    a = np.abs(x)
    index = np.argmax(a, axis=0)  # first occurrence of the maximum (strict > scan)
    amax = np.take_along_axis(a, index[None], 0)[0]
    signed = np.take_along_axis(x, index[None], 0)[0]
    return amax, np.where(amax > 0, signed, f32(0))


def scan_max_from_zero(v: np.ndarray) -> np.ndarray:
    """`m = 0; if (v > m) m = v;` over the leading axis (never -0)."""
    m = np.zeros(v.shape[1:], f32)
    for t in v:
        m = np.where(t > m, t, m)
    return m


def scan_min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min and max over the leading axis with strict < / > from element 0 (so +0 beats a later -0)."""
    mn, mx = x[0].copy(), x[0].copy()
    for t in x[1:]:
        mn = np.where(t < mn, t, mn)
        mx = np.where(t > mx, t, mx)
    return mn, mx


def safe_div(num, den) -> np.ndarray:
    """num/den where den != 0, else 0 (the `d ? 1/d : 0` of the reference)."""
    num, den = np.broadcast_arrays(np.asarray(num, f32), np.asarray(den, f32))
    out = np.zeros(num.shape, f32)
    np.divide(num, den, out=out, where=den != 0)
    return out


def u16_bytes(v: np.ndarray) -> np.ndarray:
    """[n] uint16 -> [n, 2] little-endian bytes."""
    return np.ascontiguousarray(v.astype("<u2")).view(np.uint8).reshape(-1, 2)


def pack_nibbles_32(q: np.ndarray) -> np.ndarray:
    """q [32, nb] (values 0..15) -> [nb, 16] bytes, element j low nibble, j+16 high (note §1.2)."""
    return (q[:16] | (q[16:] << 4)).astype(np.uint8).T


def unpack_nibbles_32(qs: np.ndarray) -> np.ndarray:
    """[nb, 16] bytes -> [nb, 32] nibbles in element order."""
    return np.concatenate([qs & 15, qs >> 4], axis=1)


def bits_of(words: np.ndarray, count: int) -> np.ndarray:
    """[nb] uint32 -> [nb, count] bits (bit e of the word)."""
    return ((words[:, None] >> np.arange(count, dtype=np.uint32)) & 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# 32-element types (note §4.2); x is [32, nb] float32

def _q8_0(x):
    amax = np.max(np.abs(x), axis=0)
    d = amax / f32(127)
    inv = safe_div(f32(1), d)
    q = roundf(x * inv).astype(np.int8)
    return d, q


def quantize_q8_0_blocks(x):
    d, q = _q8_0(x)
    return np.concatenate([u16_bytes(to_f16_bits(d)), q.T.view(np.uint8)], axis=1)


def quantize_q8_1_blocks(x):
    d, q = _q8_0(x)
    total = q.astype(np.int32).sum(axis=0)  # integer sum: exact
    s = total.astype(f32) * d
    return np.concatenate([u16_bytes(to_f16_bits(d)), u16_bytes(to_f16_bits(s)), q.T.view(np.uint8)], axis=1)


def _legacy_symmetric(x, levels):
    """Q4_0 (levels 16) / Q5_0 (levels 32): d = max / -(levels/2), q = min(levels-1, trunc8(x·id + levels/2 + 0.5))."""
    _, mx = signed_absmax(x)
    d = mx / f32(-(levels // 2))
    inv = safe_div(f32(1), d)
    q = trunc_int(x * inv + f32(levels // 2 + 0.5)).astype(np.int8)  # C (int8_t) cast
    q = np.minimum(levels - 1, q.astype(np.int32)).astype(np.uint8)
    return d, q


def _legacy_affine(x, levels, clamp):
    mn, mx = scan_min_max(x)
    d = (mx - mn) / f32(levels - 1)
    inv = safe_div(f32(1), d)
    v = (x - mn) * inv + f32(0.5)
    if clamp:  # Q4_1: min(15, (int8)v)
        q = np.minimum(levels - 1, trunc_int(v).astype(np.int8).astype(np.int32)).astype(np.uint8)
    else:      # Q5_1: (uint8)v, no clamp
        q = trunc_int(v).astype(np.uint8)
    return d, mn, q


def _qh_word(q):
    """bit e of the LE uint32 = bit 4 of q[e] (note §1.2, Q5_0/Q5_1)."""
    bits = ((q >> 4) & 1).astype(np.uint32)
    return (bits << np.arange(32, dtype=np.uint32)[:, None]).sum(axis=0, dtype=np.uint32)


def quantize_q4_0_blocks(x):
    d, q = _legacy_symmetric(x, 16)
    return np.concatenate([u16_bytes(to_f16_bits(d)), pack_nibbles_32(q)], axis=1)


def quantize_q5_0_blocks(x):
    d, q = _legacy_symmetric(x, 32)
    qh = np.ascontiguousarray(_qh_word(q).astype("<u4")).view(np.uint8).reshape(-1, 4)
    return np.concatenate([u16_bytes(to_f16_bits(d)), qh, pack_nibbles_32(q & 15)], axis=1)


def quantize_q4_1_blocks(x):
    d, m, q = _legacy_affine(x, 16, True)
    return np.concatenate([u16_bytes(to_f16_bits(d)), u16_bytes(to_f16_bits(m)), pack_nibbles_32(q)], axis=1)


def quantize_q5_1_blocks(x):
    d, m, q = _legacy_affine(x, 32, False)
    qh = np.ascontiguousarray(_qh_word(q).astype("<u4")).view(np.uint8).reshape(-1, 4)
    return np.concatenate([u16_bytes(to_f16_bits(d)), u16_bytes(to_f16_bits(m)), qh, pack_nibbles_32(q & 15)],
                          axis=1)


# ---------------------------------------------------------------------------------------------
# helper searches (note §4.3); x, w are [n, groups]

def make_qx_quants(x, nmax):
    """Symmetric scale with grid refinement, rmse_type 1 (weights x²), no imatrix. -> (scale, L 0..2nmax-1)."""
    amax, mx = signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, f32(1), mx)
    w = x * x
    wx = w * x

    def levels(iscale):
        l = np.clip(nint(iscale * x), -nmax, nmax - 1)
        lf = l.astype(f32)
        return l, seqsum(wx * lf), seqsum((w * lf) * lf)

    l, sumlx, suml2 = levels(f32(-nmax) / mx)
    scale = safe_div(sumlx, suml2)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(f32(nmax) + f32(0.1) * f32(step)) / mx
        lc, slx, sl2 = levels(iscale)
        take = (sl2 > 0) & (slx * slx > best * sl2)
        l = np.where(take, lc, l)
        scale = np.where(take, safe_div(slx, sl2), scale)
        best = np.where(take, scale * slx, best)
    L = (l + nmax).astype(np.int32)
    L[:, zero] = 0
    scale = np.where(zero, f32(0), scale)
    return scale, L


def make_q3_quants(x, nmax):
    """note §4.3 make_q3_quants(n, nmax, x, do_rmse = true) -> (scale, L 0..2nmax-1)."""
    amax, mx = signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, f32(1), mx)
    l = np.clip(nint((f32(-nmax) / mx) * x), -nmax, nmax - 1).astype(np.int32)
    w = x * x
    wx = w * x
    lf = l.astype(f32)
    sumlx = seqsum(wx * lf)
    suml2 = seqsum((w * lf) * lf)
    for _ in range(5):  # a pass that changes nothing leaves the state as it was: later passes are no-ops
        for i in range(x.shape[0]):
            li = l[i].astype(f32)
            slx = sumlx - wx[i] * li
            sl2 = suml2 - (w[i] * li) * li
            positive = slx > 0
            quotient = safe_div(x[i] * sl2, np.where(positive, slx, f32(1)))
            new_l = np.clip(nint(quotient), -nmax, nmax - 1)
            nf = new_l.astype(f32)
            slx2 = slx + wx[i] * nf
            sl22 = sl2 + (w[i] * nf) * nf
            take = positive & (new_l != l[i]) & (sl22 > 0) & ((slx2 * slx2) * suml2 > (sumlx * sumlx) * sl22)
            l[i] = np.where(take, new_l, l[i])
            sumlx = np.where(take, slx2, sumlx)
            suml2 = np.where(take, sl22, suml2)
    L = l + nmax
    L[:, zero] = 0
    scale = np.where(zero, f32(0), safe_div(sumlx, suml2))
    return scale, L


def make_qkx2_quants(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """Affine (scale, min) search (note §4.3). -> (scale, the_min >= 0, L 0..nmax)."""
    mn, mx = scan_min_max(x)
    sum_w = seqsum(w, from_first=True)
    sum_x = seqsum(w * x, from_first=True)
    mn = np.where(mn > 0, f32(0), mn)
    flat = mx == mn
    flat_min = mn
    mx = np.where(flat, mx + f32(1), mx)  # any non-zero span: flat groups are overwritten below

    def error(scale, mn_, L):
        diff = (scale * L.astype(f32) + mn_) - x
        diff = np.abs(diff) if use_mad else diff * diff
        return seqsum(w * diff)

    iscale = f32(nmax) / (mx - mn)
    scale = f32(1) / iscale
    L = np.clip(nint(iscale * (x - mn)), 0, nmax)
    best = error(scale, mn, L)
    for step in range(nstep + 1):
        # the grid uses the current min: once a fit is adopted, later steps measure from its offset
        iscale = ((f32(rmin) + f32(rdelta) * f32(step)) + f32(nmax)) / (mx - mn)
        La = np.clip(nint(iscale * (x - mn)), 0, nmax)
        lf = La.astype(f32)
        wl = w * lf
        sum_l, sum_l2, sum_xl = seqsum(wl), seqsum(wl * lf), seqsum(wl * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        Dsafe = np.where(ok, D, f32(1))
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / Dsafe
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / Dsafe
        positive = this_min > 0
        this_min = np.where(positive, f32(0), this_min)
        this_scale = np.where(positive, safe_div(sum_xl, sum_l2), this_scale)
        current = error(this_scale, this_min, La)
        take = ok & (current < best)
        L = np.where(take, La, L)
        best = np.where(take, current, best)
        scale = np.where(take, this_scale, scale)
        mn = np.where(take, this_min, mn)
    L[:, flat] = 0
    scale = np.where(flat, f32(0), scale)
    mn = np.where(flat, flat_min, mn)
    return scale, -mn, L


# ---------------------------------------------------------------------------------------------
# K-quants (note §4.4); x is [256, nb]

def _sub(x, size):
    """[256, nb] -> [size, 256/size * nb] with sub-block s of block b at column b*(256/size) + s."""
    nb = x.shape[1]
    return np.ascontiguousarray(x.T.reshape(nb * (QK_K // size), size).T)


def _unsub(L, size, nb):
    """inverse of _sub for levels: [size, nsub*nb] -> [256, nb]."""
    return np.ascontiguousarray(L.T.reshape(nb, QK_K).T)


def _pack_2bit(L):
    """L [256, nb] values 0..3 -> [nb, 64]: byte 32n+l holds elements 128n+l, +32, +64, +96 (note §1.2)."""
    nb = L.shape[1]
    q = L.reshape(2, 4, 32, nb).astype(np.uint8)
    packed = q[:, 0] | (q[:, 1] << 2) | (q[:, 2] << 4) | (q[:, 3] << 6)  # [2, 32, nb]
    return packed.reshape(64, nb).T


def _pack_k4_scales(ls, lm):
    """ls, lm [8, nb] 0..63 -> [nb, 12] (note §1.2 get_scale_min_k4 packing)."""
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    S = np.zeros((12, ls.shape[1]), np.uint8)
    S[0:4] = ls[0:4] | ((ls[4:8] >> 4) << 6)
    S[4:8] = lm[0:4] | ((lm[4:8] >> 4) << 6)
    S[8:12] = (ls[4:8] & 15) | ((lm[4:8] & 15) << 4)
    return S.T


def _unpack_k4_scales(S):
    """[nb, 12] -> (sc, m) each [nb, 8] uint8."""
    S = S.astype(np.uint8)
    sc = np.empty((S.shape[0], 8), np.uint8)
    m = np.empty_like(sc)
    sc[:, 0:4] = S[:, 0:4] & 63
    m[:, 0:4] = S[:, 4:8] & 63
    sc[:, 4:8] = (S[:, 8:12] & 15) | ((S[:, 0:4] >> 6) << 4)
    m[:, 4:8] = (S[:, 8:12] >> 4) | ((S[:, 4:8] >> 6) << 4)
    return sc, m


def _qkx_k(x, nmax, rmin, rdelta, nstep):
    """Shared Q4_K/Q5_K search and requantization -> (d bits, dmin bits, scale bytes [nb,12], L [256, nb])."""
    nb = x.shape[1]
    xs = _sub(x, 32)
    av = np.sqrt(seqsum(xs * xs) / f32(32))
    w = av + np.abs(xs)
    scale, the_min, L = make_qkx2_quants(xs, w, nmax, rmin, rdelta, nstep, False)
    scale = scale.reshape(nb, 8).T  # [8, nb]
    the_min = the_min.reshape(nb, 8).T
    max_scale = scan_max_from_zero(scale)
    max_min = scan_max_from_zero(the_min)
    inv_scale = np.where(max_scale > 0, safe_div(f32(63), max_scale), f32(0))
    inv_min = np.where(max_min > 0, safe_div(f32(63), max_min), f32(0))
    ls = np.minimum(63, nint(inv_scale * scale) & 0xFF)  # uint8_t cast, then min(63, ·)
    lm = np.minimum(63, nint(inv_min * the_min) & 0xFF)
    d_bits = to_f16_bits(max_scale / f32(63))
    dmin_bits = to_f16_bits(max_min / f32(63))
    L = _unsub(L, 32, nb)
    d = from_f16_bits(d_bits)
    dmin = from_f16_bits(dmin_bits)
    dj = np.repeat(d[None] * ls.astype(f32), 32, axis=0)  # [256, nb]: h(d)·sc per element
    dm = np.repeat(dmin[None] * lm.astype(f32), 32, axis=0)
    requant = np.clip(nint(safe_div(x + dm, dj)), 0, nmax)
    L = np.where(dj != 0, requant, L)
    return d_bits, dmin_bits, _pack_k4_scales(ls, lm), L


def quantize_q4_k_blocks(x):
    d, dmin, S, L = _qkx_k(x, 15, -1.0, 0.1, 20)
    nb = x.shape[1]
    q = L.reshape(4, 2, 32, nb).astype(np.uint8)
    qs = (q[:, 0] | (q[:, 1] << 4)).reshape(128, nb).T
    return np.concatenate([u16_bytes(d), u16_bytes(dmin), S, qs], axis=1)


def quantize_q5_k_blocks(x):
    d, dmin, S, L = _qkx_k(x, 31, -0.5, 0.1, 15)
    nb = x.shape[1]
    q = L.reshape(4, 2, 32, nb).astype(np.uint8)
    qs = ((q[:, 0] & 15) | ((q[:, 1] & 15) << 4)).reshape(128, nb).T
    high = (L.reshape(8, 32, nb) >> 4).astype(np.uint8)  # bit (e>>5) of qh[e&31]
    qh = np.zeros((32, nb), np.uint8)
    for k in range(8):
        qh |= high[k] << k
    return np.concatenate([u16_bytes(d), u16_bytes(dmin), S, qh.T, qs], axis=1)


def quantize_q6_k_blocks(x):
    nb = x.shape[1]
    xs = _sub(x, 16)
    scale, L = make_qx_quants(xs, 32)
    scale = scale.reshape(nb, 16).T  # [16, nb]
    L = _unsub(L, 16, nb)
    amax, max_scale = signed_absmax(scale)
    zero = amax < GROUP_MAX_EPS
    iscale = f32(-128) / np.where(zero, f32(1), max_scale)
    d_bits = to_f16_bits(f32(1) / iscale)
    sc = np.minimum(127, nint(iscale * scale)).astype(np.int8)
    d = from_f16_bits(d_bits)
    dj = np.repeat(d[None] * sc.astype(f32), 16, axis=0)
    requant = np.clip(nint(safe_div(x, dj)), -32, 31) + 32
    L = np.where(dj != 0, requant, L).astype(np.uint8)
    q = L.reshape(2, 4, 32, nb)
    ql = np.concatenate([(q[:, 0] & 15) | ((q[:, 2] & 15) << 4), (q[:, 1] & 15) | ((q[:, 3] & 15) << 4)],
                        axis=1).reshape(128, nb)
    qh = ((q[:, 0] >> 4) | ((q[:, 1] >> 4) << 2) | ((q[:, 2] >> 4) << 4) | ((q[:, 3] >> 4) << 6)).reshape(64, nb)
    out = np.concatenate([ql.T, qh.T, sc.T.view(np.uint8), u16_bytes(d_bits)], axis=1)
    out[zero] = 0  # an all-zero block is written as zeros with d = 0
    return out


def quantize_q3_k_blocks(x):
    nb = x.shape[1]
    xs = _sub(x, 16)
    scale, L = make_q3_quants(xs, 4)
    scale = scale.reshape(nb, 16).T
    L = _unsub(L, 16, nb)
    _, max_scale = signed_absmax(scale)
    nonzero = max_scale != 0
    iscale = f32(-32) / np.where(nonzero, max_scale, f32(1))
    ls = (np.clip(nint(iscale * scale).astype(np.int8).astype(np.int32), -32, 31) + 32).astype(np.uint8)
    ls[:, ~nonzero] = 0
    S = np.zeros((12, nb), np.uint8)
    S[0:8] = (ls[0:8] & 15) | ((ls[8:16] & 15) << 4)
    for j in range(16):
        S[8 + j % 4] |= (ls[j] >> 4) << (2 * (j // 4))
    d_bits = to_f16_bits(np.where(nonzero, f32(1) / iscale, f32(0)))
    sc = ls.astype(np.int32) - 32  # the stored 6-bit scale, as the requantization re-reads it
    dj = np.repeat(from_f16_bits(d_bits)[None] * sc.astype(f32), 16, axis=0)
    requant = np.clip(nint(safe_div(x, dj)), -4, 3) + 4
    L = np.where(dj != 0, requant, L).astype(np.uint8)
    high = (L > 3).astype(np.uint8).reshape(8, 32, nb)
    hmask = np.zeros((32, nb), np.uint8)
    for k in range(8):
        hmask |= high[k] << k
    low = np.where(L > 3, L - 4, L)
    return np.concatenate([hmask.T, _pack_2bit(low), S.T, u16_bytes(d_bits)], axis=1)


def quantize_q2_k_blocks(x):
    nb = x.shape[1]
    xs = _sub(x, 16)
    scale, the_min, L = make_qkx2_quants(xs, np.abs(xs), 3, -0.5, 0.1, 15, True)
    scale = scale.reshape(nb, 16).T
    the_min = the_min.reshape(nb, 16).T
    L = _unsub(L, 16, nb)
    max_scale = scan_max_from_zero(scale)
    max_min = scan_max_from_zero(the_min)
    has_scale, has_min = max_scale > 0, max_min > 0
    lo = np.where(has_scale, nint(safe_div(f32(15), max_scale) * scale), 0)
    hi = np.where(has_min, nint(safe_div(f32(15), max_min) * the_min), 0)
    scales = ((lo & 0xFF) | ((hi << 4) & 0xFF)).astype(np.uint8)  # byte stores, as the reference's uint8 fields
    d_bits = to_f16_bits(np.where(has_scale, max_scale / f32(15), f32(0)))
    dmin_bits = to_f16_bits(np.where(has_min, max_min / f32(15), f32(0)))
    dj = np.repeat(from_f16_bits(d_bits)[None] * (scales & 15).astype(f32), 16, axis=0)
    dm = np.repeat(from_f16_bits(dmin_bits)[None] * (scales >> 4).astype(f32), 16, axis=0)
    requant = np.clip(nint(safe_div(x + dm, dj)), 0, 3)
    L = np.where(dj != 0, requant, L)
    return np.concatenate([scales.T, _pack_2bit(L), u16_bytes(d_bits), u16_bytes(dmin_bits)], axis=1)


def quantize_q8_k_blocks(x):
    amax, mx = signed_absmax(x)
    zero = amax == 0
    iscale = f32(-127) / np.where(zero, f32(1), mx)
    q = np.minimum(127, nint(iscale * x))
    q[:, zero] = 0
    d = np.where(zero, f32(0), f32(1) / iscale).astype("<f4")
    q8 = q.astype(np.int8)
    bsums = q.reshape(16, 16, -1).sum(axis=1).astype("<i2")  # [16, nb], integer sums: exact
    return np.concatenate([np.ascontiguousarray(d).view(np.uint8).reshape(-1, 4), q8.T.view(np.uint8),
                           np.ascontiguousarray(bsums.T).view(np.uint8)], axis=1)


# ---------------------------------------------------------------------------------------------
# IQ4_NL / IQ4_XS (note §4.5, ntry = 7, weights x²)

def best_index(v: np.ndarray) -> np.ndarray:
    """Index of the nearest IQ4 table entry; a tie goes to the upper entry (note §4.5)."""
    upper = np.clip(np.searchsorted(IQ4_TABLE_F, v, side="right"), 1, 15)
    below = IQ4_TABLE_F[upper - 1]
    above = IQ4_TABLE_F[upper]
    index = np.where((v - below) < (above - v), upper - 1, upper)
    index = np.where(v <= IQ4_TABLE_F[0], 0, index)
    return np.where(v >= IQ4_TABLE_F[15], 15, index).astype(np.uint8)


def _iq4_search(x):
    """Per 32-block scale search. x [32, groups] -> scale [groups] (0 for all-zero groups)."""
    amax, mx = signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, f32(1), mx)
    w = x * x

    def sums(inv):
        q = IQ4_TABLE_F[best_index(inv * x)]
        wq = w * q
        return seqsum(wq * x), seqsum(wq * q)

    d = -mx / f32(-127)  # ntry > 0: d = -max / T[0]
    sumqx, sumq2 = sums(f32(1) / d)
    d = sumqx / np.where(sumq2 != 0, sumq2, f32(1))
    best = d * sumqx
    for t in range(-7, 8):
        inv = f32(t - 127) / mx
        sqx, sq2 = sums(inv)
        take = (sq2 > 0) & (sqx * sqx > best * sq2)
        d = np.where(take, safe_div(sqx, sq2), d)
        best = np.where(take, d * sqx, best)
    return np.where(zero, f32(0), d)


def quantize_iq4_nl_blocks(x):
    d = _iq4_search(x)
    inv = safe_div(f32(1), d)
    L = best_index(inv * x)
    return np.concatenate([u16_bytes(to_f16_bits(d)), pack_nibbles_32(L)], axis=1)


def quantize_iq4_xs_blocks(x):
    nb = x.shape[1]
    xs = _sub(x, 32)
    scale = _iq4_search(xs).reshape(nb, 8).T  # [8, nb]
    _, max_scale = signed_absmax(scale)
    d = -max_scale / f32(32)
    d_bits = to_f16_bits(d)
    inv = safe_div(f32(1), d)
    l = np.clip(nint(inv * scale), -32, 31)
    dl = d * l.astype(f32)
    idl = safe_div(f32(1), dl)
    L = best_index(np.repeat(idl, 32, axis=0) * x)  # [256, nb]
    ls = (l + 32).astype(np.uint8)
    scales_l = ((ls[0::2] & 15) | ((ls[1::2] & 15) << 4)).T  # [nb, 4]
    scales_h = np.zeros(nb, np.uint16)
    for ib in range(8):
        scales_h |= ((ls[ib] >> 4).astype(np.uint16) << (2 * ib))
    q = L.reshape(8, 2, 16, nb)
    qs = (q[:, 0] | (q[:, 1] << 4)).reshape(128, nb).T
    return np.concatenate([u16_bytes(d_bits), u16_bytes(scales_h), scales_l, qs], axis=1)


_QUANTIZERS = {
    "Q4_0": quantize_q4_0_blocks, "Q4_1": quantize_q4_1_blocks, "Q5_0": quantize_q5_0_blocks,
    "Q5_1": quantize_q5_1_blocks, "Q8_0": quantize_q8_0_blocks, "Q8_1": quantize_q8_1_blocks,
    "Q2_K": quantize_q2_k_blocks, "Q3_K": quantize_q3_k_blocks, "Q4_K": quantize_q4_k_blocks,
    "Q5_K": quantize_q5_k_blocks, "Q6_K": quantize_q6_k_blocks, "Q8_K": quantize_q8_k_blocks,
    "IQ4_NL": quantize_iq4_nl_blocks, "IQ4_XS": quantize_iq4_xs_blocks,
}
CHUNK_ELEMENTS = 1 << 16  # elements per numpy pass: the working arrays stay in the caches (fastest measured)


def quantize(x: np.ndarray, type_name: str) -> np.ndarray:
    """float32 [rows, cols] -> uint8 [rows, row_bytes] with the reference quantizer of `type_name`."""
    x = np.ascontiguousarray(x, f32)
    if x.ndim == 1:
        x = x[None]
    rows, cols = x.shape
    elements, nbytes = BLOCK[type_name]
    rb = row_bytes(type_name, cols)
    blocks = x.reshape(-1, elements)
    out = np.empty((blocks.shape[0], nbytes), np.uint8)
    step = max(1, CHUNK_ELEMENTS // elements)
    with np.errstate(all="ignore"):
        for begin in range(0, blocks.shape[0], step):
            chunk = np.ascontiguousarray(blocks[begin:begin + step].T)
            out[begin:begin + step] = _QUANTIZERS[type_name](chunk)
    return out.reshape(rows, rb)


# ---------------------------------------------------------------------------------------------
# dequantization (note §2); b is [nb, block bytes] uint8, results [nb, elements] float32

def _h(b, at):
    return from_f16_bits(b[:, at:at + 2].copy().view("<u2")[:, 0])


def _dq_q4_0(b):
    return (unpack_nibbles_32(b[:, 2:18]).astype(f32) - f32(8)) * _h(b, 0)[:, None]


def _dq_q4_1(b):
    return unpack_nibbles_32(b[:, 4:20]).astype(f32) * _h(b, 0)[:, None] + _h(b, 2)[:, None]


def _q5(b, qh_at, qs_at):
    qh = b[:, qh_at:qh_at + 4].copy().view("<u4")[:, 0]
    return unpack_nibbles_32(b[:, qs_at:qs_at + 16]) | (bits_of(qh, 32) << 4)


def _dq_q5_0(b):
    return (_q5(b, 2, 6).astype(f32) - f32(16)) * _h(b, 0)[:, None]


def _dq_q5_1(b):
    return _q5(b, 4, 8).astype(f32) * _h(b, 0)[:, None] + _h(b, 2)[:, None]


def _dq_q8_0(b):
    return b[:, 2:34].view(np.int8).astype(f32) * _h(b, 0)[:, None]


def _dq_q8_1(b):
    return b[:, 4:36].view(np.int8).astype(f32) * _h(b, 0)[:, None]


def _dq_iq4_nl(b):
    return _h(b, 0)[:, None] * IQ4_TABLE_F[unpack_nibbles_32(b[:, 2:18])]


def _low2(qs):
    """[nb, 64] -> [nb, 256] 2-bit values (note §1.2 Q2_K order)."""
    q = qs.reshape(-1, 2, 1, 32)
    return ((q >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3).reshape(-1, 256)


def _dq_q2_k(b):
    s = b[:, 0:16]
    d, dmin = _h(b, 80), _h(b, 82)
    dl = np.repeat(d[:, None] * (s & 15).astype(f32), 16, axis=1)
    ml = np.repeat(dmin[:, None] * (s >> 4).astype(f32), 16, axis=1)
    return dl * _low2(b[:, 16:80]).astype(f32) - ml


def _q3_scales(S):
    low4 = np.concatenate([S[:, 0:8] & 15, S[:, 0:8] >> 4], axis=1)
    s = np.arange(16)
    high2 = (S[:, 8 + (s & 3)] >> (2 * (s >> 2))) & 3
    return (low4 | (high2 << 4)).astype(np.int32) - 32


def _dq_q3_k(b):
    hm = b[:, 0:32]
    e = np.arange(256)
    hbit = (hm[:, e & 31] >> (e >> 5).astype(np.uint8)) & 1
    q = _low2(b[:, 32:96]).astype(np.int32) - np.where(hbit != 0, 0, 4)
    dl = np.repeat(_h(b, 108)[:, None] * _q3_scales(b[:, 96:108]).astype(f32), 16, axis=1)
    return dl * q.astype(f32)


def _k4_quants(qs):
    """[nb, 128] -> [nb, 256] 4-bit values (note §1.2 Q4_K order)."""
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 15, q >> 4], axis=2).reshape(-1, 256)


def _dq_k_affine(b, q, d_at=0):
    sc, m = _unpack_k4_scales(b[:, 4:16])
    d1 = np.repeat(_h(b, 0)[:, None] * sc.astype(f32), 32, axis=1)
    m1 = np.repeat(_h(b, 2)[:, None] * m.astype(f32), 32, axis=1)
    return d1 * q.astype(f32) - m1


def _dq_q4_k(b):
    return _dq_k_affine(b, _k4_quants(b[:, 16:144]))


def _dq_q5_k(b):
    e = np.arange(256)
    high = (b[:, 16:48][:, e & 31] >> (e >> 5).astype(np.uint8)) & 1
    return _dq_k_affine(b, _k4_quants(b[:, 48:176]) | (high << 4))


def _dq_q6_k(b):
    ql = b[:, 0:128].reshape(-1, 2, 2, 32)       # [nb, n, half of 64, l]
    qh = b[:, 128:192].reshape(-1, 2, 1, 32)
    low = np.concatenate([ql & 15, ql >> 4], axis=2)  # g = 0, 1 low nibbles; 2, 3 high
    high = (qh >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3
    q = (low | (high << 4)).reshape(-1, 256).astype(np.int32) - 32
    sc = b[:, 192:208].view(np.int8).astype(f32)
    dl = np.repeat(_h(b, 208)[:, None] * sc, 16, axis=1)
    return dl * q.astype(f32)


def _dq_iq4_xs(b):
    scales_h = b[:, 2:4].copy().view("<u2")[:, 0].astype(np.int32)
    scales_l = b[:, 4:8].astype(np.int32)
    ib = np.arange(8)
    ls = ((scales_l[:, ib >> 1] >> (4 * (ib & 1))) & 15) | (((scales_h[:, None] >> (2 * ib)) & 3) << 4)
    dl = np.repeat(_h(b, 0)[:, None] * (ls - 32).astype(f32), 32, axis=1)
    q = b[:, 8:136].reshape(-1, 8, 1, 16)
    idx = np.concatenate([q & 15, q >> 4], axis=2).reshape(-1, 256)
    return dl * IQ4_TABLE_F[idx]


def _dq_q8_k(b):
    d = b[:, 0:4].copy().view("<f4")[:, 0]
    return d[:, None] * b[:, 4:260].view(np.int8).astype(f32)


_DEQUANTIZERS = {
    "Q4_0": _dq_q4_0, "Q4_1": _dq_q4_1, "Q5_0": _dq_q5_0, "Q5_1": _dq_q5_1, "Q8_0": _dq_q8_0,
    "Q8_1": _dq_q8_1, "Q2_K": _dq_q2_k, "Q3_K": _dq_q3_k, "Q4_K": _dq_q4_k, "Q5_K": _dq_q5_k,
    "Q6_K": _dq_q6_k, "Q8_K": _dq_q8_k, "IQ4_NL": _dq_iq4_nl, "IQ4_XS": _dq_iq4_xs,
}


def dequantize_blocks(blocks: np.ndarray, type_name: str) -> np.ndarray:
    """uint8 [nb, block bytes] -> float32 [nb, block elements]."""
    elements, nbytes = BLOCK[type_name]
    blocks = np.ascontiguousarray(blocks, np.uint8).reshape(-1, nbytes)
    out = np.empty((blocks.shape[0], elements), f32)
    step = max(1, CHUNK_ELEMENTS // elements)
    with np.errstate(all="ignore"):
        for begin in range(0, blocks.shape[0], step):
            out[begin:begin + step] = _DEQUANTIZERS[type_name](blocks[begin:begin + step])
    return out


def dequantize(data, type_name: str, cols: int) -> np.ndarray:
    """Row bytes (uint8 [rows, row_bytes] or any flat buffer of whole rows) -> float32 [rows, cols]."""
    flat = np.frombuffer(bytes(data), np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.ascontiguousarray(data, np.uint8).reshape(-1)
    rb = row_bytes(type_name, cols)
    if flat.size % rb:
        raise ValueError(f"{type_name}: {flat.size} bytes are not whole rows of {rb} bytes")
    return dequantize_blocks(flat, type_name).reshape(-1, cols)


# ---------------------------------------------------------------------------------------------
# self-checks

def _scalar_q8_0(block):
    """Per-element transcription of note §4.2 Q8_0 with numpy float32 scalars."""
    amax = f32(0)
    for v in block:
        a = f32(abs(v))
        if a > amax:
            amax = a
    d = f32(amax / f32(127))
    inv = f32(f32(1) / d) if d != 0 else f32(0)
    out = bytearray(to_f16_bits(np.array([d])).tobytes())
    for v in block:
        p = f32(v * inv)
        r = float(np.floor(abs(p) + 0.5))  # |p| + 0.5 in double is exact for float32 p
        out.append((int(r if p >= 0 else -r)) & 0xFF)
    return bytes(out)


def _scalar_q4_0(block):
    """Per-element transcription of note §4.2 Q4_0 with numpy float32 scalars."""
    amax, mx = f32(0), f32(0)
    for v in block:
        if f32(abs(v)) > amax:
            amax, mx = f32(abs(v)), f32(v)
    d = f32(mx / f32(-8))
    inv = f32(f32(1) / d) if d != 0 else f32(0)
    q = [min(15, int(f32(f32(v * inv) + f32(8.5)))) for v in block]
    out = bytearray(to_f16_bits(np.array([d])).tobytes())
    out += bytes(q[j] | (q[j + 16] << 4) for j in range(16))
    return bytes(out)


def _s8(v: int) -> int:
    return v - 256 if v > 127 else v


def _scalar_dequantize(b: bytes, name: str) -> list:
    """One block, element by element, with the formulas and association of note §2."""
    def h(at):
        return f32(np.frombuffer(b[at:at + 2], "<f2")[0])

    def nib(qs, e):
        return qs[e & 15] & 15 if e < 16 else qs[e & 15] >> 4

    out = []
    if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL"):
        for e in range(32):
            if name == "Q4_0":
                out.append(f32(nib(b[2:18], e) - 8) * h(0))
            elif name == "Q4_1":
                out.append(f32(nib(b[4:20], e)) * h(0) + h(2))
            elif name == "Q5_0":
                qh = int.from_bytes(b[2:6], "little")
                out.append(f32((nib(b[6:22], e) | (((qh >> e) & 1) << 4)) - 16) * h(0))
            elif name == "Q5_1":
                qh = int.from_bytes(b[4:8], "little")
                out.append(f32(nib(b[8:24], e) | (((qh >> e) & 1) << 4)) * h(0) + h(2))
            elif name == "Q8_0":
                out.append(f32(_s8(b[2 + e])) * h(0))
            else:
                out.append(h(0) * IQ4_TABLE_F[nib(b[2:18], e)])
        return out
    for e in range(256):
        n, k, l = e >> 7, (e >> 5) & 3, e & 31
        if name == "Q2_K":
            q = (b[16 + 32 * n + l] >> (2 * k)) & 3
            s = b[e >> 4]
            out.append((h(80) * f32(s & 15)) * f32(q) - (h(82) * f32(s >> 4)))
        elif name == "Q3_K":
            S = b[96:108]
            hbit = (b[l] >> (e >> 5)) & 1
            q = ((b[32 + 32 * n + l] >> (2 * k)) & 3) - (0 if hbit else 4)
            sb = e >> 4
            low4 = S[sb] & 15 if sb < 8 else S[sb - 8] >> 4
            high2 = (S[8 + (sb & 3)] >> (2 * (sb >> 2))) & 3
            out.append((h(108) * f32((low4 | (high2 << 4)) - 32)) * f32(q))
        elif name in ("Q4_K", "Q5_K"):
            qs_at = 16 if name == "Q4_K" else 48
            c, w = e >> 6, e & 63
            byte = b[qs_at + 32 * c + (w & 31)]
            q = byte & 15 if w < 32 else byte >> 4
            if name == "Q5_K":
                q += 16 * ((b[16 + (e & 31)] >> (e >> 5)) & 1)
            j, S = e >> 5, b[4:16]
            if j < 4:
                sc, m = S[j] & 63, S[j + 4] & 63
            else:
                sc = (S[j + 4] & 15) | ((S[j - 4] >> 6) << 4)
                m = (S[j + 4] >> 4) | ((S[j] >> 6) << 4)
            out.append((h(0) * f32(sc)) * f32(q) - (h(2) * f32(m)))
        elif name == "Q6_K":
            g = (e >> 5) & 3
            byte = b[64 * n + 32 * (g & 1) + l]
            low4 = byte & 15 if g < 2 else byte >> 4
            high2 = (b[128 + 32 * n + l] >> (2 * g)) & 3
            out.append((h(208) * f32(_s8(b[192 + (e >> 4)]))) * f32((low4 | (high2 << 4)) - 32))
        elif name == "IQ4_XS":
            ib, w = e >> 5, e & 31
            byte = b[8 + 16 * ib + (w & 15)]
            q = byte & 15 if w < 16 else byte >> 4
            scales_h = int.from_bytes(b[2:4], "little")
            ls = ((b[4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((scales_h >> (2 * ib)) & 3) << 4)
            out.append((h(0) * f32(ls - 32)) * IQ4_TABLE_F[q])
    return out


def random_blocks(name: str, count: int, rng) -> np.ndarray:
    """Random bytes of `count` blocks with finite f16 scales (|scale| < 1)."""
    _, nbytes = BLOCK[name]
    b = rng.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    scale_at = {"Q2_K": (80, 82), "Q3_K": (108,), "Q6_K": (208,), "Q8_K": ()}.get(name, (0, 2) if name in (
        "Q4_1", "Q5_1", "Q4_K", "Q5_K", "Q8_1") else (0,))
    for at in scale_at:
        b[:, at + 1] &= 0xBB  # exponent field < 0x1E: finite and below 2^0
    if name == "Q8_K":
        b[:, 0:4] = np.ascontiguousarray(rng.uniform(-1, 1, count).astype("<f4")).view(np.uint8).reshape(-1, 4)
    return b


# expected bound of |x - dequantize(quantize(x))| relative to the block's max |x|, for uniform
# random data: half a step of the format's grid (the step is range/levels) plus the f16 scale
# rounding; K-quants' sub-block scales add their own 4/6-bit rounding. Deliberately loose: a
# layout or formula mistake gives errors of the order of the value itself.
# (Q4_0/Q5_0: the side opposite the extreme is capped one step short, so up to a whole step.)
ROUND_TRIP_BOUND = {"Q8_0": 0.006, "Q8_1": 0.006, "Q8_K": 0.006, "Q4_0": 0.135, "Q4_1": 0.075, "Q5_0": 0.07,
                    "Q5_1": 0.04, "Q2_K": 0.45, "Q3_K": 0.3, "Q4_K": 0.12, "Q5_K": 0.07, "Q6_K": 0.03,
                    "IQ4_NL": 0.15, "IQ4_XS": 0.15}


def self_check() -> None:
    rng = np.random.default_rng(11)
    for name in WEIGHT_TYPES + ["Q8_1", "Q8_K"]:
        elements, _ = BLOCK[name]
        x = rng.uniform(-1, 1, size=(64, 1024)).astype(f32) * rng.uniform(0.01, 10, size=(64, 1)).astype(f32)
        q = quantize(x, name)
        y = dequantize(q, name, 1024)
        blockmax = np.abs(x.reshape(-1, elements)).max(axis=1, keepdims=True)
        err = (np.abs(x - y).reshape(-1, elements) / blockmax).max()
        rms = np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2))
        assert err <= ROUND_TRIP_BOUND[name], (name, err)
        assert np.array_equal(quantize(y, name), q) or name not in ("Q8_0",), name  # Q8_0 is idempotent
        print(f"{name:7s} max |err|/blockmax {err:.4f}  rms rel {rms:.4f}")
    for name in WEIGHT_TYPES:
        b = random_blocks(name, 40, rng)
        got = dequantize_blocks(b, name)
        for i in range(b.shape[0]):
            want = np.array(_scalar_dequantize(b[i].tobytes(), name), f32)
            assert np.array_equal(got[i].view(np.uint32), want.view(np.uint32)), (name, i)
    print("dequantize equals the per-element formulas of note §2 bit for bit (40 random blocks per type)")
    x = rng.normal(size=(2000, 32)).astype(f32)
    x[::7] = np.round(x[::7] * 4) / 4  # many exact ties
    x[5] = 0
    for name, scalar in (("Q8_0", _scalar_q8_0), ("Q4_0", _scalar_q4_0)):
        q = quantize(x, name)
        for i in range(x.shape[0]):
            assert q[i].tobytes() == scalar(x[i]), (name, i)
        print(f"{name} equals the scalar transcription on {x.shape[0]} blocks")


if __name__ == "__main__":
    self_check()
    sys.exit(0)
