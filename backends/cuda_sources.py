"""CUDA C++ sources of the CuPy backend's kernels, one small module per concept, compiled by CuPy's RawModule
(NVRTC) on first use. cuda_kernels.py launches them; tests/test_cuda_kernels.py compiles every one of them with
CuPy's own options wherever NVRTC is installed, GPU or not.

Rounding. Each kernel computes what portanet's Array API code computes, in the same order and precision: float32
in float32 with the Python scalars rounded to float32 first (as CuPy does for a float32 array times a Python
float), and ``--fmad=false`` so that no multiply and add are contracted into one FMA (CuPy's own elementwise
kernels each do one operation, so they never contract). Where the order is the same the bits are the same; the
reductions (column sums, the cross-entropy's row sums and total) add in another order than CuPy's tree and agree
to float tolerance. CuPy adds ``-ftz=true`` to every module it compiles, its own included, so subnormals flush
alike on both sides.

Launch shape: elementwise kernels loop over their elements with a grid stride (FOR_EACH), so any grid is correct
and cuda_kernels.py picks a modest one; the reductions say their own shape above them.
"""
from __future__ import annotations

# NVRTC needs no headers for any of this; the host build of RNG_CORE (the test that runs it on the CPU) includes
# <math.h> itself.
TYPES = r"""
typedef long long i64;
typedef unsigned int u32;
typedef unsigned long long u64;
"""

PRELUDE = TYPES + r"""
// A quiet NaN without <math.h> (NVRTC has no NAN macro of its own).
#define PN_NAN __longlong_as_double(0x7ff8000000000000ULL)

// Every element i < n, one thread each, as many rounds as the grid needs.
#define FOR_EACH(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)
"""

# ---- random streams -----------------------------------------------------------------------------------------

# Philox4x32-10 and the transforms of counter_rng.py, written once for the GPU and, for the test that checks this
# very text against the NumPy reference on a machine without one, for the host compiler.
RNG_CORE = r"""
#if defined(__CUDACC__)
#define PN_FN __device__ __forceinline__
#define PN_MULHI(a, b) __umulhi(a, b)
#else
#define PN_FN static inline
#define PN_MULHI(a, b) ((u32)(((u64)(a) * (u64)(b)) >> 32))
#endif

// Ten rounds on the counter c under key (k0, k1); c becomes the block's four random words (Salmon et al. 2011).
PN_FN void philox4x32_10(u32 c[4], u32 k0, u32 k1) {
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += 0x9E3779B9u;                           // the key moves by a Weyl sequence between rounds
            k1 += 0xBB67AE85u;
        }
        u32 hi0 = PN_MULHI(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        u32 hi1 = PN_MULHI(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        u32 n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

// Block j of the stream: counter (j low word, j high word, 0, 0).
PN_FN void stream_block(u64 j, u32 k0, u32 k1, u32 w[4]) {
    w[0] = (u32)j;
    w[1] = (u32)(j >> 32);
    w[2] = 0;
    w[3] = 0;
    philox4x32_10(w, k0, k1);
}

// Uniforms in [0, 1) from the top 24 or 53 bits: every value exact, no rounding anywhere.
PN_FN float u24(u32 w) { return (float)(w >> 8) * 0x1p-24f; }
PN_FN double u53(u32 a, u32 b) { return (double)((((u64)a << 32) | b) >> 11) * 0x1p-53; }

// Box-Muller in float64; u1 in (0, 1] so the log is finite.
PN_FN void box_muller(double u1, double u2, double *z0, double *z1) {
    double r = sqrt(-2.0 * log(u1));
    double t = 6.283185307179586 * u2;
    *z0 = r * cos(t);
    *z1 = r * sin(t);
}
"""

# One thread per block of the stream: thread t turns block start + t into values per_block * t .. of the draw.
RNG = PRELUDE + RNG_CORE + r"""
extern "C" __global__ void uniform_f32(float *out, i64 n, u32 k0, u32 k1, u64 start, float scale, float shift) {
    FOR_EACH(t, (n + 3) / 4) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        for (int q = 0; q < 4; q++)
            if (4 * t + q < n)
                out[4 * t + q] = u24(w[q]) * scale + shift;
    }
}

extern "C" __global__ void uniform_f64(double *out, i64 n, u32 k0, u32 k1, u64 start, double scale,
                                       double shift) {
    FOR_EACH(t, (n + 1) / 2) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        for (int q = 0; q < 2; q++)
            if (2 * t + q < n)
                out[2 * t + q] = u53(w[2 * q], w[2 * q + 1]) * scale + shift;
    }
}

extern "C" __global__ void normal_f32(float *out, i64 n, u32 k0, u32 k1, u64 start, float std, float mean) {
    FOR_EACH(t, (n + 3) / 4) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        double z[4];
        box_muller((w[0] + 1.0) * 0x1p-32, w[1] * 0x1p-32, &z[0], &z[1]);
        box_muller((w[2] + 1.0) * 0x1p-32, w[3] * 0x1p-32, &z[2], &z[3]);
        for (int q = 0; q < 4; q++)
            if (4 * t + q < n)
                out[4 * t + q] = (float)z[q] * std + mean;
    }
}

extern "C" __global__ void normal_f64(double *out, i64 n, u32 k0, u32 k1, u64 start, double std, double mean) {
    FOR_EACH(t, (n + 1) / 2) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        double u1 = (double)(((((u64)w[0] << 32) | w[1]) >> 11) + 1) * 0x1p-53;
        double z[2];
        box_muller(u1, u53(w[2], w[3]), &z[0], &z[1]);
        for (int q = 0; q < 2; q++)
            if (2 * t + q < n)
                out[2 * t + q] = z[q] * std + mean;
    }
}

// 1 where u < p, compared in float64, where both are exact.
extern "C" __global__ void bernoulli_f32(float *out, i64 n, u32 k0, u32 k1, u64 start, double p) {
    FOR_EACH(t, (n + 3) / 4) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        for (int q = 0; q < 4; q++)
            if (4 * t + q < n)
                out[4 * t + q] = (double)u24(w[q]) < p ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void bernoulli_f64(double *out, i64 n, u32 k0, u32 k1, u64 start, double p) {
    FOR_EACH(t, (n + 1) / 2) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        for (int q = 0; q < 2; q++)
            if (2 * t + q < n)
                out[2 * t + q] = u53(w[2 * q], w[2 * q + 1]) < p ? 1.0 : 0.0;
    }
}

// A permutation's sort keys: a 64-bit random word with its low bits (mask) replaced by the value's index, so the
// keys are distinct and any sort orders them one way (counter_rng.permutation_keys).
extern "C" __global__ void permutation_keys(u64 *keys, i64 n, u32 k0, u32 k1, u64 start, u64 mask) {
    FOR_EACH(t, (n + 1) / 2) {
        u32 w[4];
        stream_block(start + (u64)t, k0, k1, w);
        for (int q = 0; q < 2; q++) {
            i64 i = 2 * t + q;
            if (i < n)
                keys[i] = ((((u64)w[2 * q] << 32) | w[2 * q + 1]) & ~mask) | (u64)i;
        }
    }
}
"""

# ---- optimizer updates --------------------------------------------------------------------------------------

# sgd.py's update with the momentum buffer started, one pass:
#   g = grad + wd * w;  buf = buf * mu + damp * g (or + g);  g = g + mu * buf (nesterov) or buf;  w = w - lr * g
SGD = PRELUDE + r"""
template <typename T>
__device__ void sgd(T *w, const T *grad, T *buf, i64 n, T lr, T mu, T damp, int use_damp, T wd, int use_wd,
                    int nesterov) {
    FOR_EACH(i, n) {
        T g = grad[i];
        if (use_wd)
            g = g + wd * w[i];
        T b = buf[i] * mu;
        b = use_damp ? b + damp * g : b + g;
        buf[i] = b;
        g = nesterov ? g + mu * b : b;
        w[i] = w[i] - lr * g;
    }
}

// sgd.py's _apply_taken: the weight gradient's GEMM already wrote momentum * buf + damp * grad into buf.
//   b = buf + wd * w (wd: the dampened weight decay);  buf = b;  w = w - lr * b
template <typename T>
__device__ void sgd_apply(T *w, T *buf, i64 n, T lr, T wd, int use_wd) {
    FOR_EACH(i, n) {
        T b = buf[i];
        if (use_wd) {
            b = b + wd * w[i];
            buf[i] = b;
        }
        w[i] = w[i] - lr * b;
    }
}

extern "C" __global__ void sgd_f32(float *w, const float *grad, float *buf, i64 n, float lr, float mu, float damp,
                                   int use_damp, float wd, int use_wd, int nesterov) {
    sgd(w, grad, buf, n, lr, mu, damp, use_damp, wd, use_wd, nesterov);
}
extern "C" __global__ void sgd_f64(double *w, const double *grad, double *buf, i64 n, double lr, double mu,
                                   double damp, int use_damp, double wd, int use_wd, int nesterov) {
    sgd(w, grad, buf, n, lr, mu, damp, use_damp, wd, use_wd, nesterov);
}
extern "C" __global__ void sgd_apply_f32(float *w, float *buf, i64 n, float lr, float wd, int use_wd) {
    sgd_apply(w, buf, n, lr, wd, use_wd);
}
extern "C" __global__ void sgd_apply_f64(double *w, double *buf, i64 n, double lr, double wd, int use_wd) {
    sgd_apply(w, buf, n, lr, wd, use_wd);
}
"""

# adam.py's update, one pass, with the scalars the Python code computes once per step:
#   mode 2 (AdamW): w = w * decay;  mode 1 (Adam): g = grad + wd * w
#   m = m * b1 + (1 - b1) * g;  v = v * b2 + ((1 - b2) * g) * g;  amsgrad: vmax = max(vmax, v) (NaN kept, as
#   maximum does) and stands for v;  w = w - (m / (sqrt(v) * inv_sqrt_c2 + eps)) * step_size
ADAM = PRELUDE + r"""
template <typename T>
__device__ void adam(T *w, const T *grad, T *m, T *v, T *vmax, int amsgrad, i64 n, T b1, T one_minus_b1, T b2,
                     T one_minus_b2, T inv_sqrt_c2, T eps, T step_size, T wd, int mode) {
    FOR_EACH(i, n) {
        T g = grad[i];
        T wi = w[i];
        if (mode == 2)
            wi = wi * wd;
        else if (mode == 1)
            g = g + wd * wi;
        T mi = m[i] * b1 + one_minus_b1 * g;
        m[i] = mi;
        T vi = v[i] * b2 + (one_minus_b2 * g) * g;      // (1 - b2) g first: g * g overflows at |g| ~ 1e19
        v[i] = vi;
        if (amsgrad) {
            T top = vmax[i];
            vi = (vi > top || vi != vi) ? vi : top;
            vmax[i] = vi;
        }
        T denom = sqrt(vi) * inv_sqrt_c2 + eps;           // sqrt: correctly rounded (NVRTC's -prec-sqrt default)
        w[i] = wi - (mi / denom) * step_size;
    }
}

// The same update where the step count t lives on the device, as in a step recorded into a CUDA graph (portanet/
// step/capture.py: the count is a 0-d array of the parameters' dtype, advanced by advance_count, one thread, before
// this launch). Each thread computes the bias corrections from t as adam.py's _update does with that count, in T:
//   inv_sqrt_c2 = 1 / sqrt(1 - b2^t);  step_size = lr / (1 - b1^t)
// (pow of T: powf for float32, as CuPy's power of a float32 array), then the update above.
template <typename T>
__device__ void adam_counted(T *w, const T *grad, T *m, T *v, T *vmax, int amsgrad, i64 n, const T *count, T b1,
                             T one_minus_b1, T b2, T one_minus_b2, T eps, T lr, T wd, int mode) {
    T t = *count;
    T inv_sqrt_c2 = (T)1 / sqrt((T)1 - pow(b2, t));
    T step_size = lr / ((T)1 - pow(b1, t));
    adam(w, grad, m, v, vmax, amsgrad, n, b1, one_minus_b1, b2, one_minus_b2, inv_sqrt_c2, eps, step_size, wd, mode);
}

template <typename T>
__device__ void advance_count(T *count) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
        *count = *count + (T)1;
}

extern "C" __global__ void adam_f32(float *w, const float *grad, float *m, float *v, float *vmax, int amsgrad,
                                    i64 n, float b1, float one_minus_b1, float b2, float one_minus_b2,
                                    float inv_sqrt_c2, float eps, float step_size, float wd, int mode) {
    adam(w, grad, m, v, vmax, amsgrad, n, b1, one_minus_b1, b2, one_minus_b2, inv_sqrt_c2, eps, step_size, wd,
         mode);
}
extern "C" __global__ void adam_f64(double *w, const double *grad, double *m, double *v, double *vmax,
                                    int amsgrad, i64 n, double b1, double one_minus_b1, double b2,
                                    double one_minus_b2, double inv_sqrt_c2, double eps, double step_size,
                                    double wd, int mode) {
    adam(w, grad, m, v, vmax, amsgrad, n, b1, one_minus_b1, b2, one_minus_b2, inv_sqrt_c2, eps, step_size, wd,
         mode);
}
extern "C" __global__ void adam_counted_f32(float *w, const float *grad, float *m, float *v, float *vmax,
                                            int amsgrad, i64 n, const float *count, float b1, float one_minus_b1,
                                            float b2, float one_minus_b2, float eps, float lr, float wd, int mode) {
    adam_counted(w, grad, m, v, vmax, amsgrad, n, count, b1, one_minus_b1, b2, one_minus_b2, eps, lr, wd, mode);
}
extern "C" __global__ void adam_counted_f64(double *w, const double *grad, double *m, double *v, double *vmax,
                                            int amsgrad, i64 n, const double *count, double b1,
                                            double one_minus_b1, double b2, double one_minus_b2, double eps,
                                            double lr, double wd, int mode) {
    adam_counted(w, grad, m, v, vmax, amsgrad, n, count, b1, one_minus_b1, b2, one_minus_b2, eps, lr, wd, mode);
}
extern "C" __global__ void advance_count_f32(float *count) { advance_count(count); }
extern "C" __global__ void advance_count_f64(double *count) { advance_count(count); }
"""

# ---- Dense, ReLU --------------------------------------------------------------------------------------------

# activations.py's ReLU backward, dx = dy * (y > 0): multiplying keeps NaN in dy and the sign of -x * 0.
# dense.py's bias add, y += b over rows, and Sequential's Dense + ReLU, y = max(y + b, 0) with NaN kept.
ELEMENTWISE = PRELUDE + r"""
template <typename T>
__device__ void relu_grad(const T *dy, const T *y, T *dx, i64 n) {
    FOR_EACH(i, n) dx[i] = dy[i] * (T)(y[i] > 0);
}

template <typename T>
__device__ void bias_add(T *y, const T *b, i64 n, i64 c, int relu) {
    FOR_EACH(i, n * c) {
        T t = y[i] + b[i % c];
        y[i] = (!relu || t > 0 || t != t) ? t : (T)0;
    }
}

extern "C" __global__ void relu_grad_f32(const float *dy, const float *y, float *dx, i64 n) {
    relu_grad(dy, y, dx, n);
}
extern "C" __global__ void relu_grad_f64(const double *dy, const double *y, double *dx, i64 n) {
    relu_grad(dy, y, dx, n);
}
extern "C" __global__ void bias_add_f32(float *y, const float *b, i64 n, i64 c, int relu) {
    bias_add(y, b, n, c, relu);
}
extern "C" __global__ void bias_add_f64(double *y, const double *b, i64 n, i64 c, int relu) {
    bias_add(y, b, n, c, relu);
}
"""

# The bias gradient db = sum over rows of dz, and (masked) the ReLU mask dz = dy * (y > 0) on the way.
# Block (32, 8): 32 columns side by side (a warp reads 32 neighbours of one row: coalesced) times 8 row slices;
# slice s adds rows s, s + 8, ... in order, then thread (x, 0) adds the 8 slices in order. A fixed order, so the
# same bits every run; another order than CuPy's sum(axis=0), so float tolerance against it. Grid: ceil(c / 32).
COLUMN_SUM = PRELUDE + r"""
template <typename T>
__device__ void column_sum(const T *dy, const T *y, T *dz, T *db, i64 n, i64 c, int masked) {
    __shared__ T part[8][32];
    i64 j = (i64)blockIdx.x * 32 + threadIdx.x;
    T acc = 0;
    if (j < c) {
        for (i64 r = threadIdx.y; r < n; r += 8) {
            T g = dy[r * c + j];
            if (masked) {
                g = g * (T)(y[r * c + j] > 0);
                dz[r * c + j] = g;
            }
            acc = acc + g;
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        T s = part[0][threadIdx.x];
        for (int k = 1; k < 8; k++)
            s = s + part[k][threadIdx.x];
        db[j] = s;
    }
}

extern "C" __global__ void column_sum_f32(const float *dy, const float *y, float *dz, float *db, i64 n, i64 c,
                                          int masked) {
    column_sum(dy, y, dz, db, n, c, masked);
}
extern "C" __global__ void column_sum_f64(const double *dy, const double *y, double *dz, double *db, i64 n, i64 c,
                                          int masked) {
    column_sum(dy, y, dz, db, n, c, masked);
}
"""

# ---- batches ------------------------------------------------------------------------------------------------

# data.py's uint8 batch: out = float(x) * scale (the conversion is exact, the product rounds once), and the
# shuffled variant that gathers rows first. A row index outside 0..len(x)-1 cannot be refused from the GPU
# without a sync: its output row becomes NaN, which the loss then shows.
BATCH = PRELUDE + r"""
template <typename T>
__device__ void scale_u8(const unsigned char *x, T *out, i64 n, T scale) {
    FOR_EACH(i, n) out[i] = (T)x[i] * scale;
}

template <typename T>
__device__ void take_scale_u8(const unsigned char *x, i64 n_x, const i64 *rows, T *out, i64 n_rows, i64 width,
                              T scale) {
    FOR_EACH(i, n_rows * width) {
        i64 r = rows[i / width];
        out[i] = (r >= 0 && r < n_x) ? (T)x[r * width + i % width] * scale : (T)PN_NAN;
    }
}

extern "C" __global__ void scale_u8_f32(const unsigned char *x, float *out, i64 n, float scale) {
    scale_u8(x, out, n, scale);
}
extern "C" __global__ void scale_u8_f64(const unsigned char *x, double *out, i64 n, double scale) {
    scale_u8(x, out, n, scale);
}
extern "C" __global__ void take_scale_u8_f32(const unsigned char *x, i64 n_x, const i64 *rows, float *out,
                                             i64 n_rows, i64 width, float scale) {
    take_scale_u8(x, n_x, rows, out, n_rows, width, scale);
}
extern "C" __global__ void take_scale_u8_f64(const unsigned char *x, i64 n_x, const i64 *rows, double *out,
                                             i64 n_rows, i64 width, double scale) {
    take_scale_u8(x, n_x, rows, out, n_rows, width, scale);
}
"""

# ---- classification heads -----------------------------------------------------------------------------------

# One block's total: thread t has written its part[t]; after the call part[0] holds the sum of all THREADS of them
# (a power of two), added in a fixed tree, so the total has the same bits every run. Every thread of the block calls it.
BLOCK_SUM = r"""
template <int THREADS, typename T>
__device__ void block_sum(T *part) {
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
}
"""

# losses.py's CrossEntropyLoss on int labels, loss and gradient in one launch:
#   per row: m = max z;  d = z - m, but 0 where z == m;  e = exp(d);  s = sum e;  loss = log s - d[label]  (d[label]
#   selected, never multiplied by a one-hot: a -inf logit elsewhere contributes e = 0, not 0 * -inf);
#   grad = (e / s - onehot) * scale
# Infinite logits follow CrossEntropyLoss's rule (losses.py): d is 0 wherever z equals the row's max, even an
# infinite one, so a +inf max (or a row of -inf) gives 0 instead of inf - inf = NaN, and ties share the probability.
# A label outside 0..c-1, or a NaN logit, makes the row's loss and gradient NaN. The total is summed in float64
# and stored once in the logits' dtype.
# One block of 256 threads: thread t takes rows t, t + 256, ...; the per-thread totals are then added in a fixed
# tree, so the total has the same bits every run. A classifier head (c up to a few hundred) is a few microseconds.
SOFTMAX_CE = PRELUDE + BLOCK_SUM + r"""
#define CE_THREADS 256

template <typename T>
__device__ void softmax_ce(const T *z, const i64 *labels, T *grad, T *total, i64 n, i64 c, T scale) {
    __shared__ double part[CE_THREADS];
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < n; i += CE_THREADS) {
        const T *zi = z + i * c;
        T *gi = grad + i * c;
        T m = zi[0];
        for (i64 j = 1; j < c; j++)
            m = zi[j] > m ? zi[j] : m;
        T s = 0;
        for (i64 j = 0; j < c; j++) {
            T e = exp(zi[j] == m ? (T)0 : zi[j] - m);
            gi[j] = e;
            s = s + e;
        }
        i64 label = labels[i];
        if (label < 0 || label >= c || m != m) {
            for (i64 j = 0; j < c; j++)
                gi[j] = (T)PN_NAN;
            acc += PN_NAN;
            continue;
        }
        for (i64 j = 0; j < c; j++) {
            T p = gi[j] / s;
            gi[j] = (j == label ? p - (T)1 : p) * scale;
        }
        acc += (double)log(s) - (double)(zi[label] == m ? (T)0 : zi[label] - m);
    }
    part[threadIdx.x] = acc;
    block_sum<CE_THREADS>(part);
    if (threadIdx.x == 0)
        *total = (T)part[0];
}

extern "C" __global__ void softmax_ce_f32(const float *z, const i64 *labels, float *grad, float *total, i64 n,
                                          i64 c, float scale) {
    softmax_ce(z, labels, grad, total, n, c, scale);
}
extern "C" __global__ void softmax_ce_f64(const double *z, const i64 *labels, double *grad, double *total, i64 n,
                                          i64 c, double scale) {
    softmax_ce(z, labels, grad, total, n, c, scale);
}
"""

# metrics.correct for int labels, written where fit's running sums keep it: counts[k] = #rows with
# argmax(z) == label. argmax as NumPy's: the first maximum, and the first NaN if a row has one. One block of 256
# threads, a fixed tree for the count, one launch where the standard code takes four (argmax, ==, astype, sum)
# and a setitem.
COUNT_CORRECT = PRELUDE + BLOCK_SUM + r"""
#define COUNT_THREADS 256

template <typename T>
__device__ void count_correct(const T *z, const i64 *labels, i64 *counts, i64 k, i64 n, i64 c) {
    __shared__ i64 part[COUNT_THREADS];
    i64 hits = 0;
    for (i64 i = threadIdx.x; i < n; i += COUNT_THREADS) {
        const T *zi = z + i * c;
        i64 best = 0;
        T top = zi[0];
        for (i64 j = 1; j < c && top == top; j++)
            if (zi[j] > top || zi[j] != zi[j]) {
                top = zi[j];
                best = j;
            }
        hits += best == labels[i];
    }
    part[threadIdx.x] = hits;
    block_sum<COUNT_THREADS>(part);
    if (threadIdx.x == 0)
        counts[k] = part[0];
}

extern "C" __global__ void count_correct_f32(const float *z, const i64 *labels, i64 *counts, i64 k, i64 n, i64 c) {
    count_correct(z, labels, counts, k, n, c);
}
extern "C" __global__ void count_correct_f64(const double *z, const i64 *labels, i64 *counts, i64 k, i64 n,
                                             i64 c) {
    count_correct(z, labels, counts, k, n, c);
}
"""

SOURCES = {"rng": RNG, "sgd": SGD, "adam": ADAM, "elementwise": ELEMENTWISE, "column_sum": COLUMN_SUM,
           "batch": BATCH, "softmax_ce": SOFTMAX_CE, "count_correct": COUNT_CORRECT}
"""Module name -> full source, as RawModule compiles it."""

OPTIONS = ("--fmad=false",)
"""Our compiler options; CuPy adds its own (--std, -I, -ftz=true, -arch) to these, see the compile test."""

KERNELS = {
    "rng": ("uniform_f32", "uniform_f64", "normal_f32", "normal_f64", "bernoulli_f32", "bernoulli_f64",
            "permutation_keys"),
    "sgd": ("sgd_f32", "sgd_f64", "sgd_apply_f32", "sgd_apply_f64"),
    "adam": ("adam_f32", "adam_f64", "adam_counted_f32", "adam_counted_f64", "advance_count_f32",
             "advance_count_f64"),
    "elementwise": ("relu_grad_f32", "relu_grad_f64", "bias_add_f32", "bias_add_f64"),
    "column_sum": ("column_sum_f32", "column_sum_f64"),
    "batch": ("scale_u8_f32", "scale_u8_f64", "take_scale_u8_f32", "take_scale_u8_f64"),
    "softmax_ce": ("softmax_ce_f32", "softmax_ce_f64"),
    "count_correct": ("count_correct_f32", "count_correct_f64"),
}
"""Module name -> the extern "C" kernels it defines (the compile test checks each is in the PTX)."""
