/* Fused kernels for host (NumPy) arrays. Optimizer updates: one pass over the parameter, its gradient and its
 * state, where NumPy needs four to six (each a separate ufunc over arrays that do not fit in L2 cache). ReLU and
 * Dense + ReLU: the mask, bias add and bias gradient folded into one pass; a Dense alone: its bias add and bias
 * gradient without NumPy's broadcasting set-up. uint8 batches: converted and scaled in one pass. Softmax
 * cross-entropy: loss and gradient in one pass, where the standard code takes a dozen small array operations.
 * Image layers (layers/_windows.py, pooling.py, conv.py): im2col and col2im one image plane at a time, where the
 * standard code makes one strided copy per kernel offset over the whole batch; max pooling with its winners in one
 * pass; a conv's per-channel bias and bias gradient split over threads (NumPy runs them on one).
 *
 * All but the cross-entropy are written in the order, precision and rounding of portanet's Array API code
 * (portanet/optim/sgd.py, adam.py, layers/activations.py, dense.py): float32 arrays are computed in float32 with the
 * Python scalars cast to float32 first, as NumPy does for a float32 array times a Python float, and the build turns
 * floating-point contraction off (no FMA), so the kernel and the standard code give the same bits.
 *
 * Buffers must be C-contiguous (elementwise ReLU: any dense layout they share; images: any batch and channel
 * strides), of one float dtype, the right sizes, and must not overlap a buffer the kernel writes; anything else
 * raises TypeError or ValueError, and the caller runs the standard code instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE
#endif

/* ---- buffers ---------------------------------------------------------------------------------------------- */

typedef struct {
    Py_buffer views[5];
    int held;
} Buffers;

static void release(Buffers *b) {
    for (int i = 0; i < b->held; i++)
        PyBuffer_Release(&b->views[i]);
    b->held = 0;
}

/* The kernels' pointers are restrict: a written buffer must share no byte with any other. 1 with ValueError set. */
static int overlapping(const Py_buffer *v, const int *writable, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (!writable[i] && !writable[j])
                continue;
            const char *a = v[i].buf, *b = v[j].buf;
            if (a < b + v[j].len && b < a + v[i].len) {
                PyErr_SetString(PyExc_ValueError, "fused kernels take arrays that do not overlap");
                return 1;
            }
        }
    return 0;
}

/* The item size of a float32 ("f") or float64 ("d") buffer format; 0 for anything else. */
static int float_size(const char *format) {
    return !format ? 0 : strcmp(format, "f") == 0 ? 4 : strcmp(format, "d") == 0 ? 8 : 0;
}

/* Hold objs[0..n) as C-contiguous buffers (with their shapes and formats); 0 with an exception set, nothing held. */
static int hold(Buffers *b, PyObject **objs, const int *writable, int n) {
    b->held = 0;
    for (int i = 0; i < n; i++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable[i] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[i], &b->views[i], flags) != 0) {
            release(b);
            return 0;
        }
        b->held++;
    }
    return 1;
}

/* Acquire objs[0..n) as C-contiguous buffers of one float format and one length; returns the item size (4 or 8),
 * or 0 with an exception set. writable[i] asks for a writable buffer. */
static int acquire(Buffers *b, PyObject **objs, const int *writable, int n) {
    if (!hold(b, objs, writable, n))
        return 0;
    const char *f = b->views[0].format;
    int size = float_size(f);
    if (size == 0) {
        PyErr_SetString(PyExc_TypeError, "fused kernels take float32 or float64 arrays");
        release(b);
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if (!b->views[i].format || strcmp(b->views[i].format, f) != 0 || b->views[i].len != b->views[0].len) {
            PyErr_SetString(PyExc_ValueError, "fused kernels take arrays of one dtype and one size");
            release(b);
            return 0;
        }
    }
    if (overlapping(b->views, writable, n)) {
        release(b);
        return 0;
    }
    return size;
}

/* Like acquire, for elementwise kernels: the arrays may be any dense layout (a permuted view of a C-contiguous
 * array, as a Conv2d's output and what elementwise layers make of it) as long as all share it, shape and strides;
 * element i of each is then the i-th item of its memory block [buf, buf + len), and the kernel runs over the
 * blocks. Returns the item size, or 0 with an exception set. */
static int acquire_dense(Buffers *b, PyObject **objs, const int *writable, int n) {
    b->held = 0;
    for (int i = 0; i < n; i++) {
        int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable[i] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[i], &b->views[i], flags) != 0) {
            release(b);
            return 0;
        }
        b->held++;
    }
    const Py_buffer *v = b->views;
    int size = float_size(v[0].format);
    const char *problem = size ? NULL : "fused kernels take float32 or float64 arrays";
    for (int i = 1; i < n && !problem; i++) {
        if (!v[i].format || strcmp(v[i].format, v[0].format) != 0 || v[i].ndim != v[0].ndim)
            problem = "fused kernels take arrays of one dtype and one layout";
        for (int d = 0; d < v[0].ndim && !problem; d++)
            if (v[i].shape[d] != v[0].shape[d] || (v[0].shape[d] > 1 && v[i].strides[d] != v[0].strides[d]))
                problem = "fused kernels take arrays of one dtype and one layout";
    }
    /* dense: the axes by decreasing stride tile the block exactly (axes of length 1 do not count) */
    Py_ssize_t expected = size, covered = 0;
    for (int round = 0; round < v[0].ndim && !problem; round++) {
        int next = -1;
        for (int d = 0; d < v[0].ndim; d++)
            if (v[0].shape[d] > 1 && v[0].strides[d] == expected)
                next = d;
        if (next < 0)
            break;
        expected *= v[0].shape[next];
        covered++;
    }
    if (!problem) {
        int needed = 0;
        for (int d = 0; d < v[0].ndim; d++)
            needed += v[0].shape[d] > 1;
        if (v[0].len != 0 && (covered != needed || expected != v[0].len))
            problem = "fused kernels take dense arrays (C-contiguous, or a permutation of such an array's axes)";
    }
    if (problem) {
        PyErr_SetString(size ? PyExc_ValueError : PyExc_TypeError, problem);
        release(b);
        return 0;
    }
    if (overlapping(b->views, writable, n)) {
        release(b);
        return 0;
    }
    return size;
}

/* ---- threads: OpenBLAS's own -------------------------------------------------------------------------------- */

/* A kernel big enough to share runs on the threads of the OpenBLAS that NumPy uses, through gotoblas_pthread(n,
 * fn, args, stride), which OpenBLAS's pthreads builds export: fn(args + i * stride) for i < n, the first on the
 * calling thread and the others on OpenBLAS's workers, returning when all are done. Those workers keep spinning
 * between GEMMs (OpenBLAS's thread timeout, ~0.1 s), so a share reaches one in well under a microsecond, where
 * a pool of our own would fight the spinning worker for the second core (measured: 1.5-5% slower per epoch).
 * And OpenBLAS gives each thread an even, ordered share of a product's rows, the caller the first: split the
 * same way, each thread finds the rows of the gradient or activation it just wrote in its own cache.
 *
 * Shares are contiguous ranges of elements (optimizer updates, elementwise passes, the uint8 conversion) or of
 * rows (bias + ReLU, a gathered batch), so a split kernel gives the same bits as one pass; the bias gradients
 * stay whole (see ROWS_RANGE). Without that OpenBLAS (another BLAS, an OS other than Linux, a build without the
 * symbols), or with one thread, or for a kernel too small to be worth the handoff, everything runs on the calling
 * thread. */
#define MAX_SHARES 64
#define SHARE_ALIGN 64                 /* bytes: shares start on cache lines, so no line is written by two threads */

typedef int (*pool_run_fn)(int n, void *fn, void *args, int stride);
static pool_run_fn pool_run;           /* gotoblas_pthread, or NULL */
static int *pool_threads;              /* its blas_cpu_number: the threads its GEMMs use now */
static char pool_library[512];
static int thread_cap;                 /* 0: as many as OpenBLAS uses; else at most this many */
static Py_ssize_t min_share = 16384;   /* elements a share at least: smaller, the handoff costs what it saves */

static void *gemm_s, *gemm_d;          /* its cblas_sgemm / cblas_dgemm, or NULL */
static int gemm_ilp64;                 /* whether their integers are int64 (else int) */

typedef void (*range_fn)(const void *task, Py_ssize_t lo, Py_ssize_t hi);
typedef struct {
    range_fn fn;
    const void *task;
    Py_ssize_t lo, hi;
    char pad[SHARE_ALIGN - 2 * sizeof(void *) - 2 * sizeof(Py_ssize_t)];
} Share;

static void run_share(void *p) {
    const Share *s = p;
    if (s->hi > s->lo)
        s->fn(s->task, s->lo, s->hi);
}

/* Never more than blas_cpu_number: OpenBLAS keeps that within its build's MAX_CPU_NUMBER, the size of the queue
 * gotoblas_pthread builds on its stack (16 in some builds, 64 in NumPy's). */
static int kernel_threads(void) {
    int t = pool_run ? *pool_threads : 1;
    if (thread_cap > 0 && t > thread_cap)
        t = thread_cap;
    return t < 1 ? 1 : t > MAX_SHARES ? MAX_SHARES : t;
}

/* fn(task, lo, hi) over [0, n) items of `width` elements each; share bounds are multiples of `align` items. */
static void split(range_fn fn, const void *task, Py_ssize_t n, Py_ssize_t width, Py_ssize_t align) {
    int parts = kernel_threads();
    Py_ssize_t by_size = n * width / min_share;
    if (by_size < parts)
        parts = (int)by_size;
    if (parts <= 1) {
        fn(task, 0, n);
        return;
    }
    Share shares[MAX_SHARES];
    for (int i = 0; i < parts; i++) {
        shares[i].fn = fn;
        shares[i].task = task;
        shares[i].lo = i == 0 ? 0 : n * i / parts / align * align;
        shares[i].hi = i == parts - 1 ? n : n * (i + 1) / parts / align * align;
    }
    pool_run(parts, (void *)run_share, shares, (int)sizeof(Share));
}

#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>

/* The same library's CBLAS GEMMs, under whichever of OpenBLAS's symbol names this build uses (NumPy's wheels prefix
 * scipy_ and, for 64-bit integers, suffix 64_); its configuration string says whether its integers are 64-bit. */
static void find_gemm(void *lib) {
    static const char *names[][3] = {
        {"scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", "scipy_openblas_get_config64_"},
        {"cblas_sgemm64_", "cblas_dgemm64_", "openblas_get_config64_"},
        {"scipy_cblas_sgemm", "scipy_cblas_dgemm", "scipy_openblas_get_config"},
        {"cblas_sgemm", "cblas_dgemm", "openblas_get_config"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *s = dlsym(lib, names[i][0]), *d = dlsym(lib, names[i][1]), *config = dlsym(lib, names[i][2]);
        if (!s || !d || !config)
            continue;
        const char *text = ((const char *(*)(void))config)();
        gemm_ilp64 = text && strstr(text, "USE64BITINT") != NULL;
        gemm_s = s;
        gemm_d = d;
        return;
    }
}

/* The first loaded library named like OpenBLAS that exports the pool: NumPy's, which loads before anything else
 * that could bundle one (SciPy imports NumPy first). */
static int find_pool(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    const char *name = info->dlpi_name;
    if (!name || !strstr(name, "openblas"))
        return 0;
    void *lib = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
    if (!lib)
        return 0;
    void *run = dlsym(lib, "gotoblas_pthread"), *threads = dlsym(lib, "blas_cpu_number");
    if (!run || !threads) {
        dlclose(lib);
        return 0;
    }
    pool_run = (pool_run_fn)run;       /* the handle stays open: NumPy keeps the library loaded anyway */
    pool_threads = threads;
    snprintf(pool_library, sizeof pool_library, "%s", name);
    find_gemm(lib);
    return 1;
}

static void attach_pool(void) { dl_iterate_phdr(find_pool, NULL); }
#else
static void attach_pool(void) {}
#endif

/* ---- SGD ---------------------------------------------------------------------------------------------------- */

/* sgd.py, with the momentum buffer already started:
 *   g = grad + wd * w;  buf = buf * mu + damp * g (damp == 1: + g);  g = g + mu * buf (nesterov) or buf;
 *   w = w - lr * g */
#define SGD_KERNEL(NAME, T)                                                                                      \
    WIDE static void NAME(T *restrict w, const T *restrict grad, T *restrict buf, Py_ssize_t n, T lr, T mu,      \
                          T damp, int use_damp, T wd, int use_wd, int nesterov) {                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            T g = grad[i];                                                                                        \
            if (use_wd) {                                                                                         \
                T decay = wd * w[i];                                                                              \
                g = g + decay;                                                                                    \
            }                                                                                                     \
            T b = buf[i] * mu;                                                                                    \
            if (use_damp) {                                                                                       \
                T scaled = damp * g;                                                                              \
                b = b + scaled;                                                                                   \
            } else {                                                                                              \
                b = b + g;                                                                                        \
            }                                                                                                     \
            buf[i] = b;                                                                                           \
            if (nesterov) {                                                                                       \
                T ahead = mu * b;                                                                                 \
                g = g + ahead;                                                                                    \
            } else {                                                                                              \
                g = b;                                                                                            \
            }                                                                                                     \
            T step = lr * g;                                                                                      \
            w[i] = w[i] - step;                                                                                   \
        }                                                                                                         \
    }

SGD_KERNEL(sgd_f32, float)
SGD_KERNEL(sgd_f64, double)

typedef struct {
    char *w, *grad, *buf;
    double lr, mu, damp, wd;
    int use_damp, use_wd, nesterov;
} SgdTask;

#define SGD_RANGE(NAME, KERNEL, T)                                                                               \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const SgdTask *t = p;                                                                                     \
        KERNEL((T *)t->w + lo, (const T *)t->grad + lo, (T *)t->buf + lo, hi - lo, (T)t->lr, (T)t->mu,            \
               (T)t->damp, t->use_damp, (T)t->wd, t->use_wd, t->nesterov);                                        \
    }

SGD_RANGE(sgd_range_f32, sgd_f32, float)
SGD_RANGE(sgd_range_f64, sgd_f64, double)

static PyObject *py_sgd(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    double lr, mu, damp, wd;
    int nesterov;
    if (!PyArg_ParseTuple(args, "OOOddddp", &objs[0], &objs[1], &objs[2], &lr, &mu, &damp, &wd, &nesterov))
        return NULL;
    static const int writable[3] = {1, 0, 1};
    Buffers b;
    int size = acquire(&b, objs, writable, 3);
    if (!size)
        return NULL;
    Py_ssize_t n = b.views[0].len / size;
    SgdTask task = {b.views[0].buf, b.views[1].buf, b.views[2].buf, lr, mu, damp, wd, damp != 1.0, wd != 0.0,
                    nesterov};
    Py_BEGIN_ALLOW_THREADS
    split(size == 4 ? sgd_range_f32 : sgd_range_f64, &task, n, 1, SHARE_ALIGN / size);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* ---- Adam / AdamW ------------------------------------------------------------------------------------------- */

/* adam.py, per element, with the scalars the Python code computes once per step:
 *   decay_w = 1 - lr * wd (AdamW, applied to w first) or g = grad + wd * w (Adam);
 *   m = m * b1 + (1 - b1) * g;  v = v * b2 + ((1 - b2) * g) * g;  vmax = max(vmax, v) (amsgrad, NaN-propagating
 *   like NumPy's maximum; vmax then stands for v);
 *   w = w - (m / (sqrt(v) * inv_sqrt_c2 + eps)) * step_size */
#define ADAM_KERNEL(NAME, T, SQRT)                                                                               \
    WIDE static void NAME(T *restrict w, const T *restrict grad, T *restrict m, T *restrict v,                   \
                          T *restrict vmax, Py_ssize_t n, T b1, T one_minus_b1, T b2, T one_minus_b2,             \
                          T inv_sqrt_c2, T eps, T step_size, T wd, int mode) {                                    \
        /* mode: 0 no weight decay, 1 L2 (Adam), 2 decoupled (AdamW) */                                          \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            T g = grad[i];                                                                                        \
            T wi = w[i];                                                                                          \
            if (mode == 2) {                                                                                      \
                wi = wi * wd;                                                                                     \
            } else if (mode == 1) {                                                                               \
                T decay = wd * wi;                                                                                \
                g = g + decay;                                                                                    \
            }                                                                                                     \
            T mi = m[i] * b1;                                                                                     \
            T gm = one_minus_b1 * g;                                                                              \
            mi = mi + gm;                                                                                         \
            m[i] = mi;                                                                                            \
            T vi = v[i] * b2;                                                                                     \
            T g2 = one_minus_b2 * g;                                                                              \
            g2 = g2 * g;                                                                                          \
            vi = vi + g2;                                                                                         \
            v[i] = vi;                                                                                            \
            if (vmax) {                                                                                           \
                T top = vmax[i];                                                                                  \
                vi = (vi > top || vi != vi) ? vi : top;                                                               \
                vmax[i] = vi;                                                                                     \
            }                                                                                                     \
            T denom = SQRT(vi);                                                                                   \
            denom = denom * inv_sqrt_c2;                                                                          \
            denom = denom + eps;                                                                                  \
            T update = mi / denom;                                                                                \
            update = update * step_size;                                                                          \
            w[i] = wi - update;                                                                                   \
        }                                                                                                         \
    }

ADAM_KERNEL(adam_f32, float, sqrtf)
ADAM_KERNEL(adam_f64, double, sqrt)

typedef struct {
    char *w, *grad, *m, *v, *vmax;
    double b1, one_minus_b1, b2, one_minus_b2, inv_sqrt_c2, eps, step_size, wd;
    int mode;
} AdamTask;

#define ADAM_RANGE(NAME, KERNEL, T)                                                                              \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const AdamTask *t = p;                                                                                    \
        KERNEL((T *)t->w + lo, (const T *)t->grad + lo, (T *)t->m + lo, (T *)t->v + lo,                           \
               t->vmax ? (T *)t->vmax + lo : NULL, hi - lo, (T)t->b1, (T)t->one_minus_b1, (T)t->b2,               \
               (T)t->one_minus_b2, (T)t->inv_sqrt_c2, (T)t->eps, (T)t->step_size, (T)t->wd, t->mode);             \
    }

ADAM_RANGE(adam_range_f32, adam_f32, float)
ADAM_RANGE(adam_range_f64, adam_f64, double)

static PyObject *py_adam(PyObject *self, PyObject *args) {
    PyObject *objs[5];
    double b1, b2, inv_sqrt_c2, eps, step_size, wd;
    int mode;
    if (!PyArg_ParseTuple(args, "OOOOOddddddi", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &b1, &b2,
                          &inv_sqrt_c2, &eps, &step_size, &wd, &mode))
        return NULL;
    int amsgrad = objs[4] != Py_None;
    static const int writable[5] = {1, 0, 1, 1, 1};
    Buffers b;
    int size = acquire(&b, objs, writable, amsgrad ? 5 : 4);
    if (!size)
        return NULL;
    Py_ssize_t n = b.views[0].len / size;
    AdamTask task = {b.views[0].buf, b.views[1].buf, b.views[2].buf, b.views[3].buf,
                     amsgrad ? b.views[4].buf : NULL, b1, 1.0 - b1, b2, 1.0 - b2, inv_sqrt_c2, eps, step_size,
                     wd, mode};
    Py_BEGIN_ALLOW_THREADS
    split(size == 4 ? adam_range_f32 : adam_range_f64, &task, n, 1, SHARE_ALIGN / size);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* ---- ReLU gradient ---------------------------------------------------------------------------------------------- */

/* activations.py's ReLU backward, dx = dy * (y > 0 ? 1 : 0), in one pass instead of three (compare, convert,
 * multiply). Multiplying keeps the standard code's bits: NaN in dy stays NaN, and -x * 0 is -0. */
#define RELU_GRAD_KERNEL(NAME, T)                                                                                \
    WIDE static void NAME(const T *restrict dy, const T *restrict y, T *restrict dx, Py_ssize_t n) {             \
        for (Py_ssize_t i = 0; i < n; i++)                                                                        \
            dx[i] = dy[i] * (T)(y[i] > 0);                                                                        \
    }

RELU_GRAD_KERNEL(relu_grad_f32, float)
RELU_GRAD_KERNEL(relu_grad_f64, double)

typedef struct {
    char *a, *b, *c;
    Py_ssize_t n, width;
} ArraysTask;

#define RELU_GRAD_RANGE(NAME, KERNEL, T)                                                                         \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const ArraysTask *t = p;                                                                                  \
        KERNEL((const T *)t->a + lo, (const T *)t->b + lo, (T *)t->c + lo, hi - lo);                              \
    }

RELU_GRAD_RANGE(relu_grad_range_f32, relu_grad_f32, float)
RELU_GRAD_RANGE(relu_grad_range_f64, relu_grad_f64, double)

static PyObject *py_relu_grad(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    if (!PyArg_ParseTuple(args, "OOO", &objs[0], &objs[1], &objs[2]))
        return NULL;
    static const int writable[3] = {0, 0, 1};
    Buffers b;
    int size = acquire_dense(&b, objs, writable, 3);
    if (!size)
        return NULL;
    ArraysTask task = {b.views[0].buf, b.views[1].buf, b.views[2].buf, b.views[0].len / size, 1};
    Py_BEGIN_ALLOW_THREADS
    split(size == 4 ? relu_grad_range_f32 : relu_grad_range_f64, &task, task.n, 1, SHARE_ALIGN / size);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* activations.py's ReLU forward, y = maximum(x, 0): NaN kept, -0 and negatives to +0, as NumPy's maximum gives. */
#define RELU_KERNEL(NAME, T)                                                                                     \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const ArraysTask *t = p;                                                                                  \
        const T *restrict x = (const T *)t->a;                                                                    \
        T *restrict y = (T *)t->b;                                                                                \
        for (Py_ssize_t i = lo; i < hi; i++) {                                                                    \
            T v = x[i];                                                                                           \
            y[i] = (v > 0 || v != v) ? v : (T)0;                                                                  \
        }                                                                                                         \
    }

RELU_KERNEL(relu_range_f32, float)
RELU_KERNEL(relu_range_f64, double)

static PyObject *py_relu(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "OO", &objs[0], &objs[1]))
        return NULL;
    static const int writable[2] = {0, 1};
    Buffers b;
    int size = acquire_dense(&b, objs, writable, 2);
    if (!size)
        return NULL;
    ArraysTask task = {b.views[0].buf, b.views[1].buf, NULL, b.views[0].len / size, 1};
    Py_BEGIN_ALLOW_THREADS
    split(size == 4 ? relu_range_f32 : relu_range_f64, &task, task.n, 1, SHARE_ALIGN / size);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* ---- Dense + ReLU ------------------------------------------------------------------------------------------------ */

/* Dense's bias add and the ReLU after it, in place on the Dense's own fresh output (Sequential fuses the pair):
 *   y = max(y + b, 0), NaN kept, as `y += b; maximum(y, 0.0)`.
 * Backward: dz = dy * (y > 0), and the Dense's bias gradient db = sum over rows of dz, accumulated row by row in
 * the array's precision as NumPy's sum(axis=0) does. */
#define BIAS_RELU_KERNEL(NAME, T)                                                                                \
    WIDE static void NAME(T *restrict y, const T *restrict b, Py_ssize_t n, Py_ssize_t c) {                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            T *yi = y + i * c;                                                                                    \
            for (Py_ssize_t j = 0; j < c; j++) {                                                                  \
                T t = yi[j] + b[j];                                                                               \
                yi[j] = (t > 0 || t != t) ? t : (T)0;                                                             \
            }                                                                                                     \
        }                                                                                                         \
    }

#define RELU_GRAD_SUM_KERNEL(NAME, T)                                                                            \
    WIDE static void NAME(const T *restrict dy, const T *restrict y, T *restrict dz, T *restrict db,             \
                          Py_ssize_t n, Py_ssize_t c) {                                                           \
        for (Py_ssize_t j = 0; j < c; j++)                                                                        \
            db[j] = 0;                                                                                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            const T *dyi = dy + i * c, *yi = y + i * c;                                                           \
            T *dzi = dz + i * c;                                                                                  \
            for (Py_ssize_t j = 0; j < c; j++) {                                                                  \
                T g = dyi[j] * (T)(yi[j] > 0);                                                                    \
                dzi[j] = g;                                                                                       \
                db[j] = db[j] + g;                                                                                \
            }                                                                                                     \
        }                                                                                                         \
    }

/* dense.py without a ReLU after it: y += b (rows), and the bias gradient xp.sum(dy, axis=0), which NumPy adds up
 * row after row from 0 for a C-contiguous array, as here. Same bits; they spare the small last layer NumPy's
 * broadcasting and reduction set-up, which costs more than the arithmetic at (batch, 10). */
#define BIAS_ADD_KERNEL(NAME, T)                                                                                 \
    WIDE static void NAME(T *restrict y, const T *restrict b, Py_ssize_t n, Py_ssize_t c) {                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            T *yi = y + i * c;                                                                                    \
            for (Py_ssize_t j = 0; j < c; j++)                                                                    \
                yi[j] = yi[j] + b[j];                                                                             \
        }                                                                                                         \
    }

#define COL_SUM_KERNEL(NAME, T)                                                                                  \
    WIDE static void NAME(const T *restrict dy, T *restrict db, Py_ssize_t n, Py_ssize_t c) {                    \
        for (Py_ssize_t j = 0; j < c; j++)                                                                        \
            db[j] = 0;                                                                                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            const T *dyi = dy + i * c;                                                                            \
            for (Py_ssize_t j = 0; j < c; j++)                                                                    \
                db[j] = db[j] + dyi[j];                                                                           \
        }                                                                                                         \
    }

BIAS_ADD_KERNEL(bias_add_f32, float)
BIAS_ADD_KERNEL(bias_add_f64, double)
COL_SUM_KERNEL(col_sum_f32, float)
COL_SUM_KERNEL(col_sum_f64, double)
BIAS_RELU_KERNEL(bias_relu_f32, float)
BIAS_RELU_KERNEL(bias_relu_f64, double)
RELU_GRAD_SUM_KERNEL(relu_grad_sum_f32, float)
RELU_GRAD_SUM_KERNEL(relu_grad_sum_f64, double)

/* Rows lo..hi of an (n, c) array with a (c,) vector. The in-place passes share rows among threads; the bias
 * gradients run whole on the calling thread: a share of columns each (the only split that keeps every column's
 * sum in row order) reads across both cores' caches and measured twice as slow as one thread. */
#define ROWS_RANGE(NAME, KERNEL, T)                                                                              \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const ArraysTask *t = p;                                                                                  \
        KERNEL((T *)t->a + lo * t->width, (T *)t->b, hi - lo, t->width);                                          \
    }

ROWS_RANGE(bias_relu_range_f32, bias_relu_f32, float)
ROWS_RANGE(bias_relu_range_f64, bias_relu_f64, double)
ROWS_RANGE(bias_add_range_f32, bias_add_f32, float)
ROWS_RANGE(bias_add_range_f64, bias_add_f64, double)
ROWS_RANGE(col_sum_range_f32, col_sum_f32, float)
ROWS_RANGE(col_sum_range_f64, col_sum_f64, double)

/* objs[0..k) share a (n, c) shape; bias of the same format, (c,) (one value per column: a Dense's) or with per_row
 * (n,) (one value per row: a Conv2d's (channels, positions) product). Returns the item size or 0 with an exception. */
static int acquire_rows(Buffers *b, PyObject **objs, const int *writable, int k, PyObject *bias, int bias_writable,
                        int per_row, Py_ssize_t *n, Py_ssize_t *c) {
    int size = acquire(b, objs, writable, k);
    if (!size)
        return 0;
    if (b->views[0].ndim != 2) {
        PyErr_SetString(PyExc_ValueError, per_row ? "row kernels take (rows, width) arrays"
                                                  : "fused Dense kernels take (batch, features) arrays");
        release(b);
        return 0;
    }
    *n = b->views[0].shape[0];
    *c = b->views[0].shape[1];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (bias_writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(bias, &b->views[k], flags) != 0) {
        release(b);
        return 0;
    }
    b->held++;
    if (!b->views[k].format || strcmp(b->views[k].format, b->views[0].format) != 0
        || b->views[k].len != (per_row ? *n : *c) * size) {
        PyErr_SetString(PyExc_ValueError, per_row ? "the bias must be (rows,) of the rows' dtype"
                                                  : "the bias must be (features,) of the activations' dtype");
        release(b);
        return 0;
    }
    int all_writable[5];
    for (int i = 0; i < k; i++)
        all_writable[i] = writable[i];
    all_writable[k] = bias_writable;
    if (overlapping(b->views, all_writable, k + 1)) {
        release(b);
        return 0;
    }
    return size;
}

/* The Python side of a kernel over (n, c) rows and one (c,) vector, or with PER_ROW an (n,) one, called as
 * NAME(rows, vector). */
#define ROWS_VECTOR_WRAPPER(NAME, R32, R64, ROWS_WRITABLE, VECTOR_WRITABLE, SHARED, PER_ROW)                  \
    static PyObject *NAME(PyObject *self, PyObject *args) {                                                       \
        PyObject *objs[1], *vector;                                                                               \
        if (!PyArg_ParseTuple(args, "OO", &objs[0], &vector))                                                     \
            return NULL;                                                                                          \
        static const int writable[1] = {ROWS_WRITABLE};                                                           \
        Buffers b;                                                                                                \
        Py_ssize_t n, c;                                                                                          \
        int size = acquire_rows(&b, objs, writable, 1, vector, VECTOR_WRITABLE, PER_ROW, &n, &c);                 \
        if (!size)                                                                                                \
            return NULL;                                                                                          \
        ArraysTask task = {b.views[0].buf, b.views[1].buf, NULL, n, c};                                           \
        Py_BEGIN_ALLOW_THREADS                                                                                    \
        if (SHARED)                                                                                               \
            split(size == 4 ? R32 : R64, &task, n, c, 1);                                                         \
        else                                                                                                      \
            (size == 4 ? R32 : R64)(&task, 0, n);                                                                 \
        Py_END_ALLOW_THREADS                                                                                      \
        release(&b);                                                                                              \
        Py_RETURN_NONE;                                                                                           \
    }

ROWS_VECTOR_WRAPPER(py_bias_relu, bias_relu_range_f32, bias_relu_range_f64, 1, 0, 1, 0)
ROWS_VECTOR_WRAPPER(py_bias_add, bias_add_range_f32, bias_add_range_f64, 1, 0, 1, 0)
ROWS_VECTOR_WRAPPER(py_bias_grad, col_sum_range_f32, col_sum_range_f64, 0, 1, 0, 0)

/* conv.py's bias for its (channels, positions) product, one value per row: y[r] += b[r] (NumPy's broadcast add,
 * the same bits), and its gradient db[r] = sum of dY's row r as NumPy's sum(axis=1) computes it: 0 plus the pairwise
 * sum of the row (numpy/_core/src/umath/loops_utils.h.src: runs under 8 from -0.0 one by one; up to 128 in eight
 * interleaved partial sums, combined ((0+1)+(2+3))+((4+5)+(6+7)), then the rest one by one; longer rows split in
 * two at a multiple of 8 below the middle), in the array's precision, so the bits are NumPy's. Both split by rows
 * over the threads, where NumPy runs on one. */
#define PAIRWISE_SUM(NAME, T)                                                                                    \
    static T NAME(const T *restrict a, Py_ssize_t n) {                                                            \
        if (n < 8) {                                                                                              \
            T res = (T)-0.0;                                                                                      \
            for (Py_ssize_t i = 0; i < n; i++)                                                                    \
                res = res + a[i];                                                                                 \
            return res;                                                                                           \
        }                                                                                                         \
        if (n <= 128) {                                                                                           \
            T r[8];                                                                                               \
            for (int j = 0; j < 8; j++)                                                                           \
                r[j] = a[j];                                                                                      \
            Py_ssize_t i = 8;                                                                                     \
            for (; i < n - (n % 8); i += 8)                                                                       \
                for (int j = 0; j < 8; j++)                                                                       \
                    r[j] = r[j] + a[i + j];                                                                       \
            T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));                           \
            for (; i < n; i++)                                                                                    \
                res = res + a[i];                                                                                 \
            return res;                                                                                           \
        }                                                                                                         \
        Py_ssize_t n2 = n / 2;                                                                                    \
        n2 -= n2 % 8;                                                                                             \
        return NAME(a, n2) + NAME(a + n2, n - n2);                                                                \
    }

PAIRWISE_SUM(pairwise_sum_f32, float)
PAIRWISE_SUM(pairwise_sum_f64, double)

#define ROW_SUM_RANGE(NAME, T, SUM)                                                                              \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const ArraysTask *t = p;                                                                                  \
        for (Py_ssize_t r = lo; r < hi; r++)                                                                      \
            ((T *)t->b)[r] = (T)0 + SUM((const T *)t->a + r * t->width, t->width);                                \
    }

/* y[r] += b[r] over each row of a (channels, positions) product; with RELU (a constant 1) then max(., 0) with NaN
 * kept, for the Conv2d + ReLU pair below. */
#define ROW_BIAS_RANGE(NAME, T, RELU)                                                                            \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const ArraysTask *t = p;                                                                                  \
        const Py_ssize_t width = t->width;                                                                        \
        for (Py_ssize_t r = lo; r < hi; r++) {                                                                    \
            T *restrict y = (T *)t->a + r * width;                                                                \
            const T b = ((const T *)t->b)[r];                                                                     \
            for (Py_ssize_t i = 0; i < width; i++) {                                                              \
                T v = y[i] + b;                                                                                   \
                y[i] = (!(RELU) || v > 0 || v != v) ? v : (T)0;                                                   \
            }                                                                                                     \
        }                                                                                                         \
    }

ROW_SUM_RANGE(row_sum_range_f32, float, pairwise_sum_f32)
ROW_SUM_RANGE(row_sum_range_f64, double, pairwise_sum_f64)
ROW_BIAS_RANGE(row_bias_range_f32, float, 0)
ROW_BIAS_RANGE(row_bias_range_f64, double, 0)

ROWS_VECTOR_WRAPPER(py_bias_add_rows, row_bias_range_f32, row_bias_range_f64, 1, 0, 1, 1)
ROWS_VECTOR_WRAPPER(py_bias_grad_rows, row_sum_range_f32, row_sum_range_f64, 0, 1, 1, 1)

/* A Conv2d and the ReLU after it, as one step (step/fusion.py pairs them), on the (channels, positions) product:
 *   forward   y[r] = max(y[r] + b[r], 0) in place, NaN kept: `y += b[:, None]`, then ReLU's maximum(y, 0), per value;
 *   backward  dz[r] = dy[r] * (y[r] > 0), then db[r] = the pairwise sum of dz's row r (as bias_grad_rows): the ReLU's
 *             mask and the conv's bias gradient in one pass over each row, which is still in cache for its sum.
 * The same bits as the two layers' own code; split by rows over the threads. */
ROW_BIAS_RANGE(row_bias_relu_range_f32, float, 1)
ROW_BIAS_RANGE(row_bias_relu_range_f64, double, 1)
ROWS_VECTOR_WRAPPER(py_bias_relu_rows, row_bias_relu_range_f32, row_bias_relu_range_f64, 1, 0, 1, 1)

typedef struct {
    const char *dy, *y;
    char *dz, *db;
    Py_ssize_t n, width;
} RowsGradTask;

#define ROW_RELU_GRAD_SUM_RANGE(NAME, T, GRAD, SUM)                                                              \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const RowsGradTask *t = p;                                                                                \
        const Py_ssize_t width = t->width;                                                                        \
        for (Py_ssize_t r = lo; r < hi; r++) {                                                                    \
            T *dz = (T *)t->dz + r * width;                                                                       \
            GRAD((const T *)t->dy + r * width, (const T *)t->y + r * width, dz, width);                           \
            ((T *)t->db)[r] = (T)0 + SUM(dz, width);                                                              \
        }                                                                                                         \
    }

ROW_RELU_GRAD_SUM_RANGE(row_relu_grad_sum_range_f32, float, relu_grad_f32, pairwise_sum_f32)
ROW_RELU_GRAD_SUM_RANGE(row_relu_grad_sum_range_f64, double, relu_grad_f64, pairwise_sum_f64)

/* The arguments (dy, y, dz, db) of relu_grad_sum and relu_grad_sum_rows: dy, y, dz (n, c) C-contiguous, dz
 * written, db (c,), or with per_row (n,), written; one float dtype. Returns the item size or 0 with an exception. */
static int acquire_relu_grad_sum(PyObject *args, Buffers *b, int per_row, Py_ssize_t *n, Py_ssize_t *c) {
    PyObject *objs[3], *db;
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &db))
        return 0;
    static const int writable[3] = {0, 0, 1};
    return acquire_rows(b, objs, writable, 3, db, 1, per_row, n, c);
}

/* relu_grad_sum_rows(dy, y, dz, db): dy, y, dz (rows, width) C-contiguous, db (rows,), one float dtype. */
static PyObject *py_relu_grad_sum_rows(PyObject *self, PyObject *args) {
    Buffers b;
    Py_ssize_t n, c;
    int size = acquire_relu_grad_sum(args, &b, 1, &n, &c);
    if (!size)
        return NULL;
    RowsGradTask task = {b.views[0].buf, b.views[1].buf, b.views[2].buf, b.views[3].buf, n, c};
    Py_BEGIN_ALLOW_THREADS
    split(size == 4 ? row_relu_grad_sum_range_f32 : row_relu_grad_sum_range_f64, &task, n, c, 1);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

static PyObject *py_relu_grad_sum(PyObject *self, PyObject *args) {
    Buffers b;
    Py_ssize_t n, c;
    int size = acquire_relu_grad_sum(args, &b, 0, &n, &c);
    if (!size)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (size == 4)
        relu_grad_sum_f32(b.views[0].buf, b.views[1].buf, b.views[2].buf, b.views[3].buf, n, c);
    else
        relu_grad_sum_f64(b.views[0].buf, b.views[1].buf, b.views[2].buf, b.views[3].buf, n, c);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* ---- weight gradients into the momentum buffer -------------------------------------------------------------- */

/* c = alpha * a.T @ b + beta * c through the OpenBLAS GEMM that NumPy's matmul calls for a.T @ b, with beta exposed:
 * a (k, m), b (k, n), each C-contiguous or the transpose of a C-contiguous array (Conv2d's dY.T and columns.T), and
 * c C-contiguous (m, ...) with n elements after its first axis (read row-major as (m, n): a Conv2d weight
 * (out, in, kh, kw) takes its (out, in * kh * kw) product). Row-major, each side transposed or not as its layout
 * asks: the call NumPy makes for the same a.T @ b (x.T @ dy for Dense; dY @ columns.T for Conv2d). */
typedef void (*sgemm_i64)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                          int64_t, float, float *, int64_t);
typedef void (*sgemm_i32)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                          float *, int);
typedef void (*dgemm_i64)(int, int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                          const double *, int64_t, double, double *, int64_t);
typedef void (*dgemm_i32)(int, int, int, int, int, int, double, const double *, int, const double *, int, double,
                          double *, int);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* A 2-D operand held C-contiguous (rows, cols) or as the transpose of a C-contiguous (cols, rows) array; 0 with an
 * exception set. *flipped says which. */
static int hold_operand(Py_buffer *v, PyObject *obj, int *flipped) {
    if (PyObject_GetBuffer(obj, v, PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT) != 0)
        return 0;
    if (v->ndim != 2) {
        PyBuffer_Release(v);
        PyErr_SetString(PyExc_ValueError, "gemm_tn takes 2-D a and b");
        return 0;
    }
    *flipped = !PyBuffer_IsContiguous(v, 'C');
    return 1;
}

static PyObject *py_gemm_tn(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    double alpha, beta;
    if (!PyArg_ParseTuple(args, "OOOdd", &objs[0], &objs[1], &objs[2], &alpha, &beta))
        return NULL;
    if (!gemm_s) {
        PyErr_SetString(PyExc_TypeError, "gemm_tn needs NumPy's OpenBLAS, which was not found");
        return NULL;
    }
    Buffers b = {.held = 0};
    int flipped[2];
    for (int i = 0; i < 2; i++) {
        if (!hold_operand(&b.views[i], objs[i], &flipped[i])) {
            release(&b);
            return NULL;
        }
        b.held++;
    }
    if (PyObject_GetBuffer(objs[2], &b.views[2], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) {
        release(&b);
        return NULL;
    }
    b.held++;
    const char *f = b.views[0].format;
    int size = float_size(f);
    int ok = size != 0;
    for (int i = 1; i < 3 && ok; i++)
        ok = b.views[i].format && strcmp(b.views[i].format, f) == 0;
    Py_ssize_t k = ok ? b.views[0].shape[0] : 0, m = ok ? b.views[0].shape[1] : 0;
    Py_ssize_t n = ok ? b.views[1].shape[1] : 0;
    ok = ok && k > 0 && m > 0 && n > 0 && b.views[1].shape[0] == k && b.views[2].ndim >= 1
         && b.views[2].shape[0] == m && b.views[2].len == m * n * size;
    ok = ok && (gemm_ilp64 || (k <= INT32_MAX && m <= INT32_MAX && n <= INT32_MAX));
    if (!ok) {
        release(&b);
        PyErr_SetString(PyExc_ValueError, "gemm_tn takes float arrays a (k, m), b (k, n) and c (m, ...) of m * n "
                                          "elements, of one dtype");
        return NULL;
    }
    static const int writable[3] = {0, 0, 1};
    if (overlapping(b.views, writable, 3)) {
        release(&b);
        return NULL;
    }
    /* a.T is (m, k): stored (k, m) row-major it is read transposed, with leading dimension m; stored as the transpose
     * of an (m, k) array it is read as is, leading dimension k. Likewise b (k, n). */
    int ta = flipped[0] ? NO_TRANS : TRANS, tb = flipped[1] ? TRANS : NO_TRANS;
    Py_ssize_t lda = flipped[0] ? k : m, ldb = flipped[1] ? k : n;
    const void *A = b.views[0].buf, *B = b.views[1].buf;
    void *C = b.views[2].buf;
    Py_BEGIN_ALLOW_THREADS
    if (size == 4 && gemm_ilp64)
        ((sgemm_i64)gemm_s)(ROW_MAJOR, ta, tb, m, n, k, (float)alpha, A, lda, B, ldb, (float)beta, C, n);
    else if (size == 4)
        ((sgemm_i32)gemm_s)(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, (float)alpha, A, (int)lda, B, (int)ldb,
                            (float)beta, C, (int)n);
    else if (gemm_ilp64)
        ((dgemm_i64)gemm_d)(ROW_MAJOR, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, n);
    else
        ((dgemm_i32)gemm_d)(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C,
                            (int)n);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* sgd.py's _apply_taken, when the momentum buffer already holds momentum * b + (1 - dampening) * grad (the GEMM
 * above wrote it there): b = buf + wd * w (wd: the dampened weight decay, 0 for none); buf = b; w = w - lr * b. */
#define SGD_APPLY_KERNEL(NAME, T)                                                                                \
    WIDE static void NAME(T *restrict w, T *restrict buf, Py_ssize_t n, T lr, T wd, int use_wd) {                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                      \
            T b = buf[i];                                                                                         \
            if (use_wd) {                                                                                         \
                T decay = wd * w[i];                                                                              \
                b = b + decay;                                                                                    \
                buf[i] = b;                                                                                       \
            }                                                                                                     \
            T step = lr * b;                                                                                      \
            w[i] = w[i] - step;                                                                                   \
        }                                                                                                         \
    }

SGD_APPLY_KERNEL(sgd_apply_f32, float)
SGD_APPLY_KERNEL(sgd_apply_f64, double)

#define SGD_APPLY_RANGE(NAME, KERNEL, T)                                                                         \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const SgdTask *t = p;                                                                                     \
        KERNEL((T *)t->w + lo, (T *)t->buf + lo, hi - lo, (T)t->lr, (T)t->wd, t->use_wd);                         \
    }

SGD_APPLY_RANGE(sgd_apply_range_f32, sgd_apply_f32, float)
SGD_APPLY_RANGE(sgd_apply_range_f64, sgd_apply_f64, double)

static PyObject *py_sgd_apply(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    double lr, wd;
    if (!PyArg_ParseTuple(args, "OOdd", &objs[0], &objs[1], &lr, &wd))
        return NULL;
    static const int writable[2] = {1, 1};
    Buffers b;
    int size = acquire(&b, objs, writable, 2);
    if (!size)
        return NULL;
    SgdTask task = {b.views[0].buf, NULL, b.views[1].buf, lr, 0, 0, wd, 0, wd != 0.0, 0};
    Py_BEGIN_ALLOW_THREADS
    split(size == 4 ? sgd_apply_range_f32 : sgd_apply_range_f64, &task, b.views[0].len / size, 1, SHARE_ALIGN / size);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

/* ---- batches ---------------------------------------------------------------------------------------------------- */

/* data.py's uint8 batch to the model's float dtype: out = float(x) * scale in one pass, where the standard code
 * converts (one pass, one array) and then scales (another pass). Same bits: a uint8 converts exactly, and the
 * product rounds once in the output's precision, as there. */
#define SCALE_U8_KERNEL(NAME, T)                                                                                 \
    WIDE static void NAME(const uint8_t *restrict x, T *restrict out, Py_ssize_t n, T scale) {                   \
        for (Py_ssize_t i = 0; i < n; i++)                                                                        \
            out[i] = (T)x[i] * scale;                                                                             \
    }

SCALE_U8_KERNEL(scale_u8_f32, float)
SCALE_U8_KERNEL(scale_u8_f64, double)

typedef struct {
    const uint8_t *x;
    char *out;
    double scale;
} ScaleTask;

#define SCALE_U8_RANGE(NAME, KERNEL, T)                                                                          \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const ScaleTask *t = p;                                                                                   \
        KERNEL(t->x + lo, (T *)t->out + lo, hi - lo, (T)t->scale);                                                \
    }

SCALE_U8_RANGE(scale_u8_range_f32, scale_u8_f32, float)
SCALE_U8_RANGE(scale_u8_range_f64, scale_u8_f64, double)

static PyObject *py_scale_u8(PyObject *self, PyObject *args) {
    PyObject *x_obj, *out_obj;
    double scale;
    if (!PyArg_ParseTuple(args, "OdO", &x_obj, &scale, &out_obj))
        return NULL;
    Py_buffer x, out;
    if (PyObject_GetBuffer(x_obj, &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0)
        return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    const char *f = out.format ? out.format : "";
    int size = float_size(f);
    int ok = size && x.format && strcmp(x.format, "B") == 0 && out.len == x.len * size;
    if (ok) {
        ScaleTask task = {x.buf, out.buf, scale};
        Py_BEGIN_ALLOW_THREADS
        split(size == 4 ? scale_u8_range_f32 : scale_u8_range_f64, &task, x.len, 1, SHARE_ALIGN / size);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "scale_u8 takes a uint8 array and a float array of as many elements");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* data.py's shuffled uint8 batch: out[r] = float(x[rows[r]]) * scale, NumPy's take and scale_u8 in one pass, the
 * same bits. The rows come from all over the dataset, so each is a run of cache misses; a thread fetches its rows
 * two ahead with prefetch hints, which keeps as many misses in flight as NumPy's memcpy does, and the threads
 * sharing a batch fetch theirs at once. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif
#define ROWS_AHEAD 2

typedef struct {
    const uint8_t *x;
    const int64_t *rows;
    char *out;
    Py_ssize_t width;
    double scale;
} TakeTask;

#define TAKE_SCALE_U8_RANGE(NAME, KERNEL, T)                                                                     \
    static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                               \
        const TakeTask *t = p;                                                                                    \
        Py_ssize_t w = t->width;                                                                                  \
        for (Py_ssize_t r = lo; r < hi; r++) {                                                                    \
            if (r + ROWS_AHEAD < hi) {                                                                            \
                const uint8_t *next = t->x + t->rows[r + ROWS_AHEAD] * w;                                         \
                for (Py_ssize_t k = 0; k < w; k += 64)                                                            \
                    PREFETCH(next + k);                                                                           \
            }                                                                                                     \
            KERNEL(t->x + t->rows[r] * w, (T *)t->out + r * w, w, (T)t->scale);                                   \
        }                                                                                                         \
    }

TAKE_SCALE_U8_RANGE(take_scale_u8_range_f32, scale_u8_f32, float)
TAKE_SCALE_U8_RANGE(take_scale_u8_range_f64, scale_u8_f64, double)

static PyObject *py_take_scale_u8(PyObject *self, PyObject *args) {
    PyObject *x_obj, *rows_obj, *out_obj;
    double scale;
    if (!PyArg_ParseTuple(args, "OOdO", &x_obj, &rows_obj, &scale, &out_obj))
        return NULL;
    Py_buffer x, rows, out;
    if (PyObject_GetBuffer(x_obj, &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0)
        return NULL;
    if (PyObject_GetBuffer(rows_obj, &rows, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&rows);
        return NULL;
    }
    const char *f = out.format ? out.format : "", *rf = rows.format ? rows.format : "";
    int size = float_size(f);
    Py_ssize_t n_rows = rows.len / 8, n_x = x.ndim >= 1 ? x.shape[0] : 0;
    Py_ssize_t width = n_x ? x.len / n_x : 0;
    const char *problem = NULL;
    if (!size || !x.format || strcmp(x.format, "B") != 0 || x.ndim < 1)
        problem = "take_scale_u8 takes a uint8 array of rows and a float32 or float64 output";
    else if (rows.ndim != 1 || rows.itemsize != 8 || (strcmp(rf, "l") != 0 && strcmp(rf, "q") != 0))
        problem = "take_scale_u8 takes int64 row indices";
    else if (out.len != n_rows * width * size)
        problem = "take_scale_u8's output must hold len(rows) rows of x";
    const int64_t *idx = rows.buf;
    for (Py_ssize_t r = 0; !problem && r < n_rows; r++)
        if (idx[r] < 0 || idx[r] >= n_x)
            problem = "take_scale_u8 takes row indices in 0..len(x)-1";
    if (!problem) {
        TakeTask task = {x.buf, idx, out.buf, width, scale};
        Py_BEGIN_ALLOW_THREADS
        split(size == 4 ? take_scale_u8_range_f32 : take_scale_u8_range_f64, &task, n_rows, width, 1);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- softmax cross-entropy ------------------------------------------------------------------------------------ */

/* losses.py's CrossEntropyLoss with integer labels, forward and backward in one pass over the logits:
 *   per row: m = max z;  d = z - m, but 0 where z == m;  e = exp(d);  s = sum e;  loss = log s - d[label];
 *   grad = (e / s - onehot) * scale.
 * Infinite logits follow the rule in CrossEntropyLoss's docstring: d is 0 wherever z equals its row's max, even an
 * infinite one, so a +inf max (or a row of -inf) gives 0 instead of inf - inf = NaN, and ties share the
 * probability; exp(-inf) is exactly 0, so a -inf logit below the max gets probability and gradient 0, and a label
 * below an infinite gap (at -inf, or under a +inf) gives loss +inf with gradient -scale there. A NaN logit makes
 * its row NaN (m skips a NaN after the first entry, but d is NaN there and poisons s). A label outside 0..c-1
 * gives a NaN loss and a NaN gradient row, as the standard code's one-hot does.
 * Returns the sum of the per-row losses (accumulated in double); exp and the sums round differently from NumPy's,
 * so this kernel agrees with the standard code to float tolerance, not bit for bit. */
#define CE_ROW_SETUP(T)                                                                                          \
    const T *zi = z + i * c;                                                                                      \
    T *gi = grad + i * c;                                                                                         \
    T m = zi[0];                                                                                                  \
    for (Py_ssize_t j = 1; j < c; j++)                                                                            \
        m = zi[j] > m ? zi[j] : m;

/* z - m, 0 where z is the max. A finite max needs no select (z - m is 0 there anyway), so rows take the plain
 * subtraction, which vectorizes, and only a row with an infinite or NaN max takes the select. */
#define CE_SHIFT(zj, m) ((zj) == (m) ? 0 : (zj) - (m))
#define CE_SHIFT_ROW(OUT)                                                                                        \
    if (isfinite(m))                                                                                              \
        for (Py_ssize_t j = 0; j < c; j++)                                                                        \
            OUT(zi[j] - m);                                                                                       \
    else                                                                                                          \
        for (Py_ssize_t j = 0; j < c; j++)                                                                        \
            OUT(CE_SHIFT(zi[j], m));

#define CE_ROW_FINISH(T, LOG)                                                                                    \
    T s = 0;                                                                                                      \
    for (Py_ssize_t j = 0; j < c; j++)                                                                            \
        s += gi[j];                                                                                               \
    int64_t label = labels[i];                                                                                    \
    if (label < 0 || label >= c || m != m) {                                                                      \
        for (Py_ssize_t j = 0; j < c; j++)                                                                        \
            gi[j] = (T)NAN;                                                                                       \
        total += NAN;                                                                                             \
        continue;                                                                                                 \
    }                                                                                                             \
    for (Py_ssize_t j = 0; j < c; j++) {                                                                          \
        T p = gi[j] / s;                                                                                          \
        gi[j] = (j == label ? p - (T)1 : p) * scale;                                                              \
    }                                                                                                             \
    total += (double)LOG(s) - (double)CE_SHIFT(zi[label], m);

static double ce_f64(const double *restrict z, const int64_t *restrict labels, double *restrict grad, Py_ssize_t n,
                     Py_ssize_t c, double scale) {
    double total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        CE_ROW_SETUP(double)
#define CE_EXP(d) gi[j] = exp(d)
        CE_SHIFT_ROW(CE_EXP)
#undef CE_EXP
        CE_ROW_FINISH(double, log)
    }
    return total;
}

/* exp(x) for the float32 kernel, where x = z - max(z) <= 0: Cephes' expf (x = n ln2 + r, |r| <= ln2 / 2, a
 * degree-7 polynomial in r, times 2^n built from its bits), branch-free so that the compiler vectorizes the loop
 * that calls it; within 2 ulp of libm's expf down to -87.3. x is clamped at -88, where n = -127 makes 2^n's bits
 * those of +0.0: from about -87.7 down (expf's deep subnormals, -inf included) the result is exactly 0, which
 * vanishes next to the row's sum (at least 1) and gives a -inf logit probability 0. NaN stays NaN. */
static inline float exp_nonpositive_f32(float x) {
    x = x < -88.0f ? -88.0f : x;
    const float round = 12582912.0f;                         /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + round) - round;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t k = n == n ? (int32_t)n : 0;                     /* n in [-127, 0]; a NaN x leaves p NaN */
    union { int32_t i; float f; } two_n = {.i = (k + 127) << 23};
    return p * two_n.f;
}

/* float32: three sweeps so that the exponentials, the bulk of the work, run as one vectorized loop over the
 * whole (n, c) array rather than rows of c (ten for MNIST) elements. */
WIDE static double ce_f32(const float *restrict z, const int64_t *restrict labels, float *restrict grad,
                          Py_ssize_t n, Py_ssize_t c, float scale) {
    for (Py_ssize_t i = 0; i < n; i++) {
        CE_ROW_SETUP(float)
#define CE_STORE(d) gi[j] = (d)
        CE_SHIFT_ROW(CE_STORE)
#undef CE_STORE
    }
    for (Py_ssize_t k = 0; k < n * c; k++)
        grad[k] = exp_nonpositive_f32(grad[k]);
    double total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        CE_ROW_SETUP(float)
        CE_ROW_FINISH(float, logf)
    }
    return total;
}

static PyObject *py_softmax_ce(PyObject *self, PyObject *args) {
    PyObject *z_obj, *labels_obj, *grad_obj;
    double scale;
    if (!PyArg_ParseTuple(args, "OOOd", &z_obj, &labels_obj, &grad_obj, &scale))
        return NULL;
    PyObject *objs[2] = {z_obj, grad_obj};
    static const int writable[2] = {0, 1};
    Buffers b;
    int size = acquire(&b, objs, writable, 2);
    if (!size)
        return NULL;
    Py_buffer lab;
    if (PyObject_GetBuffer(labels_obj, &lab, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        release(&b);
        return NULL;
    }
    Py_ssize_t n = lab.len / 8;
    int ok = lab.itemsize == 8 && lab.format && (strcmp(lab.format, "l") == 0 || strcmp(lab.format, "q") == 0)
             && b.views[0].ndim == 2 && b.views[0].shape[0] == n && n > 0 && b.views[0].shape[1] > 0;
    if (!ok) {
        PyBuffer_Release(&lab);
        release(&b);
        PyErr_SetString(PyExc_TypeError, "softmax_ce takes (n, c) float logits and (n,) int64 labels");
        return NULL;
    }
    Py_ssize_t c = b.views[0].shape[1];
    double total;
    Py_BEGIN_ALLOW_THREADS
    if (size == 4)
        total = ce_f32(b.views[0].buf, lab.buf, b.views[1].buf, n, c, (float)scale);
    else
        total = ce_f64(b.views[0].buf, lab.buf, b.views[1].buf, n, c, scale);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&lab);
    release(&b);
    return PyFloat_FromDouble(total);
}

/* ---- sliding windows: im2col, col2im, max pooling -------------------------------------------------------------- */

/* layers/_windows.py and pooling.py's loops over kernel offsets, one pass per image plane instead of one strided
 * NumPy copy per offset over the whole batch. Images are 4-D (batch, channels, height, width) buffers of any batch
 * and channel strides (a conv's output is a permuted view of (channels, batch, ...) memory) whose planes are
 * C-contiguous rows; columns are C-contiguous (channels * kh * kw, batch * H' * W'). Every element is computed as
 * the standard code computes it (copies; col2im and the max-pooling gradient add each kernel offset's share in
 * offset order onto a zeroed plane; the max keeps the standard code's comparisons), so the bits are the same. */

typedef struct {
    char *buf;
    Py_ssize_t n, c, h, w;            /* shape */
    Py_ssize_t sn, sc;                /* byte strides of the batch and channel axes */
} Images;

/* Hold obj as 4-D images of item format `format` ("f", "d" or "B") with C-contiguous planes; 0 with ValueError. */
static int hold_images(Buffers *s, PyObject *obj, int writable, const char *format, Images *out) {
    Py_buffer *v = &s->views[s->held];
    if (PyObject_GetBuffer(obj, v, PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) != 0)
        return 0;
    s->held++;
    int ok = v->ndim == 4 && v->format && strcmp(v->format, format) == 0 && v->strides[3] == v->itemsize
             && (v->shape[2] <= 1 || v->strides[2] == v->shape[3] * v->itemsize) && v->strides[0] >= 0
             && v->strides[1] >= 0;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "window kernels take 4-D images of one float dtype with C-contiguous planes");
        return 0;
    }
    *out = (Images){v->buf, v->shape[0], v->shape[1], v->shape[2], v->shape[3], v->strides[0], v->strides[1]};
    return 1;
}

/* Whether the bytes two held buffers span meet (strides are non-negative, so a view spans [buf, buf + extent)). */
static int spans_meet(const Py_buffer *a, const Py_buffer *b) {
    const char *lo[2] = {a->buf, b->buf}, *hi[2];
    const Py_buffer *v[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        Py_ssize_t extent = v[k]->itemsize;
        for (int d = 0; d < v[k]->ndim; d++)
            extent += (v[k]->shape[d] - 1) * (v[k]->strides ? v[k]->strides[d] : 0);
        for (int d = 0; d < v[k]->ndim; d++)
            if (v[k]->shape[d] == 0)
                extent = 0;
        hi[k] = lo[k] + extent;
    }
    return lo[0] < hi[1] && lo[1] < hi[0];
}

static int disjoint(Buffers *s) {
    for (int i = 0; i < s->held; i++)
        for (int j = i + 1; j < s->held; j++)
            if (spans_meet(&s->views[i], &s->views[j])) {
                PyErr_SetString(PyExc_ValueError, "window kernels take arrays that do not overlap");
                return 0;
            }
    return 1;
}

typedef struct {
    Images x, y;                      /* images read, images written (col2im, pooling) */
    char *cols;                       /* columns, C-contiguous; the pooling winners (uint8 images) use idx */
    Images idx;
    Py_ssize_t kh, kw, sh, sw, ph, pw, ho, wo;
} WindowTask;

static Py_ssize_t out_len(Py_ssize_t n, Py_ssize_t k, Py_ssize_t s, Py_ssize_t p) {
    return n + 2 * p < k ? 0 : (n + 2 * p - k) / s + 1;
}

/* Outputs wo in [lo, hi) read a column w = wo * sw + j - pw inside [0, width); the rest read padding. */
static void valid_outputs(Py_ssize_t j, Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t width, Py_ssize_t wo_n,
                          Py_ssize_t *lo, Py_ssize_t *hi) {
    Py_ssize_t first = pw - j <= 0 ? 0 : (pw - j + sw - 1) / sw;
    Py_ssize_t last = width + pw - j <= 0 ? 0 : (width + pw - j - 1) / sw + 1;   /* one past */
    if (last > wo_n)
        last = wo_n;
    if (first > last)
        first = last;
    *lo = first;
    *hi = last;
}

/* Image rows are short (28, 14, 7 values), so a memcpy or memset call per row, or a loop the vectorizer needs 16
 * iterations for, costs more than the data: runs are moved in fixed 32-, 16- and 8-byte pieces, which the compiler
 * keeps in registers, the last piece moved back to end at the run's end (it rewrites a few values, with the same
 * values). Sums cannot overlap that way: they take 32-byte pieces, then one value at a time. */
static inline void copy_run(char *restrict dst, const char *restrict src, Py_ssize_t bytes) {
    if (bytes >= 32) {
        Py_ssize_t k = 0;
        for (; k + 32 <= bytes; k += 32)
            memcpy(dst + k, src + k, 32);
        if (k < bytes)
            memcpy(dst + bytes - 32, src + bytes - 32, 32);
    } else if (bytes >= 16) {
        memcpy(dst, src, 16);
        memcpy(dst + bytes - 16, src + bytes - 16, 16);
    } else if (bytes >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + bytes - 8, src + bytes - 8, 8);
    } else if (bytes == 4) {
        memcpy(dst, src, 4);
    }
}

static inline void zero_run(char *dst, Py_ssize_t bytes) {
    if (bytes >= 32) {
        Py_ssize_t k = 0;
        for (; k + 32 <= bytes; k += 32)
            memset(dst + k, 0, 32);
        if (k < bytes)
            memset(dst + bytes - 32, 0, 32);
    } else if (bytes >= 16) {
        memset(dst, 0, 16);
        memset(dst + bytes - 16, 0, 16);
    } else if (bytes >= 8) {
        memset(dst, 0, 8);
        memset(dst + bytes - 8, 0, 8);
    } else if (bytes == 4) {
        memset(dst, 0, 4);
    }
}

typedef double f64x4 __attribute__((vector_size(32)));
typedef float f32x8 __attribute__((vector_size(32)));

#define ADD_RUN(NAME, T, V)                                                                                      \
    static inline void NAME(T *restrict dst, const T *restrict src, Py_ssize_t n) {                               \
        const Py_ssize_t lanes = sizeof(V) / sizeof(T);                                                          \
        Py_ssize_t k = 0;                                                                                         \
        for (; k + lanes <= n; k += lanes) {                                                                      \
            V a, b;                                                                                               \
            memcpy(&a, dst + k, sizeof(V));                                                                       \
            memcpy(&b, src + k, sizeof(V));                                                                       \
            a = a + b;                                                                                            \
            memcpy(dst + k, &a, sizeof(V));                                                                       \
        }                                                                                                         \
        for (; k < n; k++)                                                                                        \
            dst[k] = dst[k] + src[k];                                                                             \
    }

ADD_RUN(add_run_f32, float, f32x8)
ADD_RUN(add_run_f64, double, f64x4)

/* Rows lo..hi of the columns: row (c, i, j) holds x[n, c, ho * sh + i - ph, wo * sw + j - pw] (0 outside). */
#define IM2COL_RANGE(NAME, T)                                                                                    \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const WindowTask *t = p;                                                                                  \
        const Images x = t->x;                                                                                    \
        const Py_ssize_t kh = t->kh, kw = t->kw, sh = t->sh, sw = t->sw, ph = t->ph, pw = t->pw;                  \
        const Py_ssize_t ho_n = t->ho, wo_n = t->wo, area = kh * kw, plane = ho_n * wo_n;                         \
        for (Py_ssize_t r = lo; r < hi; r++) {                                                                    \
            Py_ssize_t c = r / area, i = r % area / kw, j = r % kw, wlo, whi;                                     \
            valid_outputs(j, sw, pw, x.w, wo_n, &wlo, &whi);                                                      \
            T *out = (T *)t->cols + r * x.n * plane;                                                              \
            for (Py_ssize_t n = 0; n < x.n; n++) {                                                                \
                const T *src = (const T *)(x.buf + n * x.sn + c * x.sc);                                          \
                for (Py_ssize_t ho = 0; ho < ho_n; ho++) {                                                        \
                    T *o = out + (n * ho_n + ho) * wo_n;                                                          \
                    Py_ssize_t h = ho * sh + i - ph;                                                              \
                    if (h < 0 || h >= x.h) {                                                                      \
                        zero_run((char *)o, wo_n * (Py_ssize_t)sizeof(T));                                        \
                        continue;                                                                                 \
                    }                                                                                             \
                    const T *row = src + h * x.w + j - pw;                                                        \
                    zero_run((char *)o, wlo * (Py_ssize_t)sizeof(T));                                             \
                    if (sw == 1)                                                                                  \
                        copy_run((char *)(o + wlo), (const char *)(row + wlo), (whi - wlo) * (Py_ssize_t)sizeof(T)); \
                    else                                                                                          \
                        for (Py_ssize_t wo = wlo; wo < whi; wo++)                                                 \
                            o[wo] = row[wo * sw];                                                                 \
                    zero_run((char *)(o + whi), (wo_n - whi) * (Py_ssize_t)sizeof(T));                           \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
    }

IM2COL_RANGE(im2col_range_f32, float)
IM2COL_RANGE(im2col_range_f64, double)

/* Planes lo..hi (plane q = c * batch + n) of y: zeroed, then every kernel offset (i, j) in order adds its column
 * row's values where im2col read them. */
#define COL2IM_RANGE(NAME, T, SUFFIX)                                                                            \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const WindowTask *t = p;                                                                                  \
        const Images y = t->y;                                                                                    \
        const Py_ssize_t kh = t->kh, kw = t->kw, sh = t->sh, sw = t->sw, ph = t->ph, pw = t->pw;                  \
        const Py_ssize_t ho_n = t->ho, wo_n = t->wo, area = kh * kw, plane = ho_n * wo_n;                         \
        for (Py_ssize_t q = lo; q < hi; q++) {                                                                    \
            Py_ssize_t c = q / y.n, n = q % y.n;                                                                  \
            T *dst = (T *)(y.buf + n * y.sn + c * y.sc);                                                          \
            memset(dst, 0, y.h * y.w * sizeof(T));                                                                \
            for (Py_ssize_t i = 0; i < kh; i++)                                                                   \
                for (Py_ssize_t j = 0; j < kw; j++) {                                                             \
                    Py_ssize_t wlo, whi;                                                                          \
                    valid_outputs(j, sw, pw, y.w, wo_n, &wlo, &whi);                                              \
                    const T *in = (const T *)t->cols + ((c * area + i * kw + j) * y.n + n) * plane;               \
                    for (Py_ssize_t ho = 0; ho < ho_n; ho++) {                                                    \
                        Py_ssize_t h = ho * sh + i - ph;                                                          \
                        if (h < 0 || h >= y.h)                                                                    \
                            continue;                                                                             \
                        T *row = dst + h * y.w + j - pw;                                                          \
                        const T *v = in + ho * wo_n;                                                              \
                        if (sw == 1)                                                                              \
                            add_run_##SUFFIX(row + wlo, v + wlo, whi - wlo);                                      \
                        else                                                                                      \
                            for (Py_ssize_t wo = wlo; wo < whi; wo++)                                             \
                                row[wo * sw] = row[wo * sw] + v[wo];                                              \
                    }                                                                                             \
                }                                                                                                 \
        }                                                                                                         \
    }

COL2IM_RANGE(col2im_range_f32, float, f32)
COL2IM_RANGE(col2im_range_f64, double, f64)

/* One output row of the max pool for kernel offset k > 0: the outputs wo in [lo, hi) see row[wo * S], and k takes
 * over where that value is larger or NaN, as pooling.py's (v > best) | isnan(v). S is 1, 2 or the stride: the
 * compiler vectorizes each with its stride known. */
#define MAXPOOL_ROW(NAME, T, S)                                                                                  \
    static inline void NAME(const T *restrict row, T *restrict best, uint8_t *restrict at, Py_ssize_t lo,        \
                            Py_ssize_t hi, Py_ssize_t s, uint8_t k) {                                             \
        (void)s;                                                                                                  \
        for (Py_ssize_t wo = lo; wo < hi; wo++) {                                                                 \
            T v = row[wo * (S)], b = best[wo];                                                                    \
            int take = (v > b) | (v != v);                                                                        \
            best[wo] = take ? v : b;                                                                              \
            at[wo] = take ? k : at[wo];                                                                           \
        }                                                                                                         \
    }

/* One row of the max pool's input gradient for kernel offset k: each output's dy where k won, 0 elsewhere (as
 * pooling.py's where(winner == k, dy, 0)), added onto row[wo * S]. */
#define MAXPOOL_GRAD_ROW(NAME, T, S)                                                                             \
    static inline void NAME(T *restrict row, const T *restrict g, const uint8_t *restrict at, Py_ssize_t lo,     \
                            Py_ssize_t hi, Py_ssize_t s, uint8_t k) {                                             \
        (void)s;                                                                                                  \
        for (Py_ssize_t wo = lo; wo < hi; wo++) {                                                                 \
            T add = at[wo] == k ? g[wo] : (T)0;                                                                   \
            row[wo * (S)] = row[wo * (S)] + add;                                                                  \
        }                                                                                                         \
    }

MAXPOOL_ROW(maxpool_row1_f32, float, 1)
MAXPOOL_ROW(maxpool_row2_f32, float, 2)
MAXPOOL_ROW(maxpool_rows_f32, float, s)
MAXPOOL_ROW(maxpool_row1_f64, double, 1)
MAXPOOL_ROW(maxpool_row2_f64, double, 2)
MAXPOOL_ROW(maxpool_rows_f64, double, s)
MAXPOOL_GRAD_ROW(maxpool_grad_row1_f32, float, 1)
MAXPOOL_GRAD_ROW(maxpool_grad_row2_f32, float, 2)
MAXPOOL_GRAD_ROW(maxpool_grad_rows_f32, float, s)
MAXPOOL_GRAD_ROW(maxpool_grad_row1_f64, double, 1)
MAXPOOL_GRAD_ROW(maxpool_grad_row2_f64, double, 2)
MAXPOOL_GRAD_ROW(maxpool_grad_rows_f64, double, s)

/* Planes lo..hi of the max pool (plane q = c * batch + n), offset by offset over the plane, which stays in L1: y
 * and idx start from kernel offset 0's values (-inf in the padding) and 0, then each later offset takes over where
 * it wins. Every output meets the offsets in the standard code's order, so the values and winners are its own. */
#define MAXPOOL_RANGE(NAME, T, SUFFIX)                                                                           \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const WindowTask *t = p;                                                                                  \
        const Images x = t->x, y = t->y, ix = t->idx;                                                             \
        const Py_ssize_t kh = t->kh, kw = t->kw, sh = t->sh, sw = t->sw, ph = t->ph, pw = t->pw;                  \
        const Py_ssize_t ho_n = t->ho, wo_n = t->wo, height = x.h, width = x.w;                                   \
        for (Py_ssize_t q = lo; q < hi; q++) {                                                                    \
            Py_ssize_t c = q / x.n, n = q % x.n;                                                                  \
            const T *src = (const T *)(x.buf + n * x.sn + c * x.sc);                                              \
            T *dst = (T *)(y.buf + n * y.sn + c * y.sc);                                                          \
            uint8_t *win = (uint8_t *)(ix.buf + n * ix.sn + c * ix.sc);                                           \
            memset(win, 0, ho_n * wo_n);                                                                          \
            Py_ssize_t wlo, whi;                                                                                  \
            valid_outputs(0, sw, pw, width, wo_n, &wlo, &whi);                                                    \
            for (Py_ssize_t ho = 0; ho < ho_n; ho++) {                                                            \
                Py_ssize_t h = ho * sh - ph;                                                                      \
                T *best = dst + ho * wo_n;                                                                        \
                for (Py_ssize_t wo = 0; wo < wo_n; wo++)                                                          \
                    best[wo] = (T)-INFINITY;                                                                      \
                if (h < 0 || h >= height)                                                                         \
                    continue;                                                                                     \
                const T *row = src + h * width - pw;                                                              \
                for (Py_ssize_t wo = wlo; wo < whi; wo++)                                                         \
                    best[wo] = row[wo * sw];                                                                      \
            }                                                                                                     \
            uint8_t k = 0;                                                                                        \
            for (Py_ssize_t i = 0; i < kh; i++)                                                                   \
                for (Py_ssize_t j = 0; j < kw; j++) {                                                             \
                    if (k++ == 0)                                                                                 \
                        continue;                                                                                 \
                    valid_outputs(j, sw, pw, width, wo_n, &wlo, &whi);                                            \
                    for (Py_ssize_t ho = 0; ho < ho_n; ho++) {                                                    \
                        Py_ssize_t h = ho * sh + i - ph;                                                          \
                        if (h < 0 || h >= height)                                                                 \
                            continue;           /* -inf: never larger, nor NaN */                                 \
                        const T *row = src + h * width + j - pw;                                                  \
                        uint8_t kk = (uint8_t)(k - 1);                                                            \
                        if (sw == 1)                                                                              \
                            maxpool_row1_##SUFFIX(row, dst + ho * wo_n, win + ho * wo_n, wlo, whi, sw, kk);       \
                        else if (sw == 2)                                                                         \
                            maxpool_row2_##SUFFIX(row, dst + ho * wo_n, win + ho * wo_n, wlo, whi, sw, kk);       \
                        else                                                                                      \
                            maxpool_rows_##SUFFIX(row, dst + ho * wo_n, win + ho * wo_n, wlo, whi, sw, kk);       \
                    }                                                                                             \
                }                                                                                                 \
        }                                                                                                         \
    }

MAXPOOL_RANGE(maxpool_range_f32, float, f32)
MAXPOOL_RANGE(maxpool_range_f64, double, f64)

/* Planes lo..hi of the max pool's input gradient: zeroed, then per kernel offset k in order, each output's dy
 * added where k won (0 elsewhere), as pooling.py adds them. */
#define MAXPOOL_GRAD_RANGE(NAME, T, SUFFIX)                                                                      \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const WindowTask *t = p;                                                                                  \
        const Images dy = t->x, dx = t->y, ix = t->idx;                                                           \
        const Py_ssize_t kh = t->kh, kw = t->kw, sh = t->sh, sw = t->sw, ph = t->ph, pw = t->pw;                  \
        const Py_ssize_t ho_n = t->ho, wo_n = t->wo, height = dx.h, width = dx.w;                                 \
        for (Py_ssize_t q = lo; q < hi; q++) {                                                                    \
            Py_ssize_t c = q / dx.n, n = q % dx.n;                                                                \
            const T *g = (const T *)(dy.buf + n * dy.sn + c * dy.sc);                                             \
            T *dst = (T *)(dx.buf + n * dx.sn + c * dx.sc);                                                       \
            const uint8_t *win = (const uint8_t *)(ix.buf + n * ix.sn + c * ix.sc);                               \
            memset(dst, 0, height * width * sizeof(T));                                                           \
            uint8_t k = 0;                                                                                        \
            for (Py_ssize_t i = 0; i < kh; i++)                                                                   \
                for (Py_ssize_t j = 0; j < kw; j++, k++) {                                                        \
                    Py_ssize_t wlo, whi;                                                                          \
                    valid_outputs(j, sw, pw, width, wo_n, &wlo, &whi);                                            \
                    for (Py_ssize_t ho = 0; ho < ho_n; ho++) {                                                    \
                        Py_ssize_t h = ho * sh + i - ph;                                                          \
                        if (h < 0 || h >= height)                                                                 \
                            continue;                                                                             \
                        T *row = dst + h * width + j - pw;                                                        \
                        if (sw == 1)                                                                              \
                            maxpool_grad_row1_##SUFFIX(row, g + ho * wo_n, win + ho * wo_n, wlo, whi, sw, k);     \
                        else if (sw == 2)                                                                         \
                            maxpool_grad_row2_##SUFFIX(row, g + ho * wo_n, win + ho * wo_n, wlo, whi, sw, k);     \
                        else                                                                                      \
                            maxpool_grad_rows_##SUFFIX(row, g + ho * wo_n, win + ho * wo_n, wlo, whi, sw, k);     \
                    }                                                                                             \
                }                                                                                                 \
        }                                                                                                         \
    }

MAXPOOL_GRAD_RANGE(maxpool_grad_range_f32, float, f32)
MAXPOOL_GRAD_RANGE(maxpool_grad_range_f64, double, f64)

/* float32 max pooling without padding, stride 1 or 2, rows of at least 4 outputs (2x2 / stride 2 after a conv, the
 * common case): a row's outputs in vectors of L lanes, a chunk's whole window in registers, the last chunk moved
 * back to end at the row's end (overlapping the one before it: the same values are written twice), so that rows
 * of 7 or 14 outputs run as whole vectors. The general loops above run everything else. Same selections, so the
 * same values and winners. GCC vector extensions; the stride-2 loads take the even or odd lanes of 2L values. */
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef uint8_t u8x8 __attribute__((vector_size(8)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
typedef uint8_t u8x4 __attribute__((vector_size(4)));

/* v = row[0], row[S], ..., row[(L - 1) S]: S = 1 reads L values, S = 2 the even (PARITY 0) or odd lanes of 2L */
#define POOL_LOAD(V, L, EVEN, ODD, v, row, S, PARITY)                                                            \
    do {                                                                                                          \
        if ((S) == 1) {                                                                                           \
            memcpy(&(v), (row), sizeof(V));                                                                       \
        } else {                                                                                                  \
            V lo_, hi_;                                                                                           \
            memcpy(&lo_, (row), sizeof(V));                                                                       \
            memcpy(&hi_, (row) + (L), sizeof(V));                                                                 \
            (v) = (PARITY) ? __builtin_shuffle(lo_, hi_, ODD) : __builtin_shuffle(lo_, hi_, EVEN);                \
        }                                                                                                         \
    } while (0)

#define MAXPOOL_FAST_RANGE(NAME, V, IV, UV, L, EVEN, ODD)                                                        \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const WindowTask *t = p;                                                                                  \
        const Images x = t->x, y = t->y, ix = t->idx;                                                             \
        const Py_ssize_t kh = t->kh, kw = t->kw, sh = t->sh, sw = t->sw, ho_n = t->ho, wo_n = t->wo, width = x.w; \
        for (Py_ssize_t q = lo; q < hi; q++) {                                                                    \
            Py_ssize_t c = q / x.n, n = q % x.n;                                                                  \
            const float *src = (const float *)(x.buf + n * x.sn + c * x.sc);                                      \
            float *dst = (float *)(y.buf + n * y.sn + c * y.sc);                                                  \
            uint8_t *win = (uint8_t *)(ix.buf + n * ix.sn + c * ix.sc);                                           \
            for (Py_ssize_t ho = 0; ho < ho_n; ho++)                                                              \
                for (Py_ssize_t w0 = 0; w0 < wo_n; w0 += (L)) {                                                   \
                    Py_ssize_t wo = w0 + (L) <= wo_n ? w0 : wo_n - (L);                                           \
                    V best = {0}, v;                                                                              \
                    IV at = {0};                                                                                  \
                    int32_t k = 0;                                                                                \
                    for (Py_ssize_t i = 0; i < kh; i++) {                                                         \
                        const float *row = src + (ho * sh + i) * width + wo * sw;                                 \
                        for (Py_ssize_t j = 0; j < kw; j++, k++) {                                                \
                            POOL_LOAD(V, L, EVEN, ODD, v, row + (sw == 1 ? j : j & ~(Py_ssize_t)1), sw, j & 1);   \
                            if (k == 0) {                                                                         \
                                best = v;                                                                         \
                                continue;                                                                         \
                            }                                                                                     \
                            IV take = (v > best) | (v != v);                                                      \
                            best = (V)(((IV)v & take) | ((IV)best & ~take));                                      \
                            at = (take & k) | (at & ~take);                                                       \
                        }                                                                                         \
                    }                                                                                             \
                    memcpy(dst + ho * wo_n + wo, &best, sizeof(V));                                               \
                    UV small = __builtin_convertvector(at, UV);                                                   \
                    memcpy(win + ho * wo_n + wo, &small, sizeof(UV));                                             \
                }                                                                                                 \
        }                                                                                                         \
    }

/* The gradient of a 2-wide, stride-2, non-overlapping pool (kh == sh): each input takes at most one output's dy,
 * so a row pair is written directly, dy where the offset won and 0 elsewhere, interleaved; 0 + value, as the
 * standard code adds onto zeros. The plane is zeroed first only where windows leave rows or columns uncovered. */
#define MAXPOOL_GRAD_FAST_RANGE(NAME, V, IV, UV, L, LOW, HIGH)                                                   \
    WIDE static void NAME(const void *p, Py_ssize_t lo, Py_ssize_t hi) {                                          \
        const WindowTask *t = p;                                                                                  \
        const Images dy = t->x, dx = t->y, ix = t->idx;                                                           \
        const Py_ssize_t kh = t->kh, ho_n = t->ho, wo_n = t->wo, width = dx.w, height = dx.h;                     \
        for (Py_ssize_t q = lo; q < hi; q++) {                                                                    \
            Py_ssize_t c = q / dx.n, n = q % dx.n;                                                                \
            const float *g = (const float *)(dy.buf + n * dy.sn + c * dy.sc);                                     \
            float *dst = (float *)(dx.buf + n * dx.sn + c * dx.sc);                                               \
            const uint8_t *win = (const uint8_t *)(ix.buf + n * ix.sn + c * ix.sc);                               \
            if (ho_n * kh != height || 2 * wo_n != width)    /* rows or columns no window covers */               \
                memset(dst, 0, height * width * sizeof(float));                                                   \
            for (Py_ssize_t ho = 0; ho < ho_n; ho++)                                                              \
                for (Py_ssize_t w0 = 0; w0 < wo_n; w0 += (L)) {                                                   \
                    Py_ssize_t wo = w0 + (L) <= wo_n ? w0 : wo_n - (L);                                           \
                    V gv, zero = {0};                                                                             \
                    UV small;                                                                                     \
                    memcpy(&gv, g + ho * wo_n + wo, sizeof(V));                                                   \
                    memcpy(&small, win + ho * wo_n + wo, sizeof(UV));                                             \
                    IV at = __builtin_convertvector(small, IV);                                                   \
                    for (Py_ssize_t i = 0; i < kh; i++) {                                                         \
                        V even = zero + (V)((IV)gv & (at == (int32_t)(2 * i))),                                   \
                          odd = zero + (V)((IV)gv & (at == (int32_t)(2 * i + 1)));                                \
                        V first = __builtin_shuffle(even, odd, LOW), second = __builtin_shuffle(even, odd, HIGH); \
                        float *row = dst + (ho * kh + i) * width + 2 * wo;                                        \
                        memcpy(row, &first, sizeof(V));                                                           \
                        memcpy(row + (L), &second, sizeof(V));                                                    \
                    }                                                                                             \
                }                                                                                                 \
        }                                                                                                         \
    }

MAXPOOL_FAST_RANGE(maxpool_fast8_range, f32x8, i32x8, u8x8, 8, ((i32x8){0, 2, 4, 6, 8, 10, 12, 14}),
                   ((i32x8){1, 3, 5, 7, 9, 11, 13, 15}))
MAXPOOL_FAST_RANGE(maxpool_fast4_range, f32x4, i32x4, u8x4, 4, ((i32x4){0, 2, 4, 6}), ((i32x4){1, 3, 5, 7}))
MAXPOOL_GRAD_FAST_RANGE(maxpool_grad_fast8_range, f32x8, i32x8, u8x8, 8, ((i32x8){0, 8, 1, 9, 2, 10, 3, 11}),
                        ((i32x8){4, 12, 5, 13, 6, 14, 7, 15}))
MAXPOOL_GRAD_FAST_RANGE(maxpool_grad_fast4_range, f32x4, i32x4, u8x4, 4, ((i32x4){0, 4, 1, 5}), ((i32x4){2, 6, 3, 7}))

/* The vector width for a float32 pool these loops take (8 or 4), or 0 for the general loops. */
static int maxpool_fast_lanes(const WindowTask *t, int size, int backward) {
    Py_ssize_t width = backward ? t->y.w : t->x.w;      /* the input's */
    if (size != 4 || t->ph || t->pw || (t->sw != 1 && t->sw != 2) || t->wo < 4)
        return 0;
    if (t->sw == 2 && 2 * t->wo + ((t->kw - 1) & ~(Py_ssize_t)1) > width)    /* the last lanes would leave the row */
        return 0;
    if (backward && (t->sw != 2 || t->kw != 2 || t->sh != t->kh))
        return 0;
    return t->wo >= 8 ? 8 : 4;
}

/* (kh, kw, sh, sw, ph, pw): sizes >= 1, padding >= 0; 0 with ValueError otherwise. */
static int window_args(PyObject *args, int first, WindowTask *t) {
    Py_ssize_t v[6];
    for (int k = 0; k < 6; k++) {
        v[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, first + k));
        if (v[k] == -1 && PyErr_Occurred())
            return 0;
    }
    if (v[0] < 1 || v[1] < 1 || v[2] < 1 || v[3] < 1 || v[4] < 0 || v[5] < 0) {
        PyErr_SetString(PyExc_ValueError, "window kernels take kernel and stride >= 1 and padding >= 0");
        return 0;
    }
    t->kh = v[0], t->kw = v[1], t->sh = v[2], t->sw = v[3], t->ph = v[4], t->pw = v[5];
    return 1;
}

static const char *float_format(PyObject *obj) {
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_STRIDES | PyBUF_FORMAT) != 0)
        return NULL;
    const char *f = float_size(v.format) == 4 ? "f" : float_size(v.format) == 8 ? "d" : NULL;
    PyBuffer_Release(&v);
    if (!f)
        PyErr_SetString(PyExc_TypeError, "window kernels take float32 or float64 arrays");
    return f;
}

/* im2col(x, cols, kh, kw, sh, sw, ph, pw): x images (n, c, h, w), cols (c * kh * kw, n * h' * w') */
static PyObject *py_im2col(PyObject *self, PyObject *args) {
    if (PyTuple_GET_SIZE(args) != 8) {
        PyErr_SetString(PyExc_TypeError, "im2col(x, cols, kh, kw, sh, sw, ph, pw)");
        return NULL;
    }
    WindowTask t;
    if (!window_args(args, 2, &t))
        return NULL;
    const char *f = float_format(PyTuple_GET_ITEM(args, 0));
    if (!f)
        return NULL;
    Buffers s = {.held = 0};
    if (!hold_images(&s, PyTuple_GET_ITEM(args, 0), 0, f, &t.x)) {
        release(&s);
        return NULL;
    }
    Py_buffer *cv = &s.views[1];
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, 1), cv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) {
        release(&s);
        return NULL;
    }
    s.held++;
    t.ho = out_len(t.x.h, t.kh, t.sh, t.ph);
    t.wo = out_len(t.x.w, t.kw, t.sw, t.pw);
    Py_ssize_t rows = t.x.c * t.kh * t.kw, width = t.x.n * t.ho * t.wo;
    if (!cv->format || strcmp(cv->format, f) != 0 || cv->ndim != 2 || cv->shape[0] != rows || cv->shape[1] != width
        || t.ho == 0 || t.wo == 0) {
        PyErr_SetString(PyExc_ValueError, "im2col's columns must be (c * kh * kw, n * h' * w') of x's dtype");
        release(&s);
        return NULL;
    }
    if (!disjoint(&s)) {
        release(&s);
        return NULL;
    }
    t.cols = cv->buf;
    Py_BEGIN_ALLOW_THREADS
    split(f[0] == 'f' ? im2col_range_f32 : im2col_range_f64, &t, rows, width, 1);
    Py_END_ALLOW_THREADS
    release(&s);
    Py_RETURN_NONE;
}

/* col2im(cols, dx, kh, kw, sh, sw, ph, pw): dx images (n, c, h, w) = the columns summed back where im2col read them */
static PyObject *py_col2im(PyObject *self, PyObject *args) {
    if (PyTuple_GET_SIZE(args) != 8) {
        PyErr_SetString(PyExc_TypeError, "col2im(cols, dx, kh, kw, sh, sw, ph, pw)");
        return NULL;
    }
    WindowTask t;
    if (!window_args(args, 2, &t))
        return NULL;
    const char *f = float_format(PyTuple_GET_ITEM(args, 1));
    if (!f)
        return NULL;
    Buffers s = {.held = 0};
    Py_buffer *cv = &s.views[0];
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, 0), cv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0)
        return NULL;
    s.held++;
    if (!hold_images(&s, PyTuple_GET_ITEM(args, 1), 1, f, &t.y)) {
        release(&s);
        return NULL;
    }
    t.ho = out_len(t.y.h, t.kh, t.sh, t.ph);
    t.wo = out_len(t.y.w, t.kw, t.sw, t.pw);
    if (!cv->format || strcmp(cv->format, f) != 0 || cv->ndim != 2 || cv->shape[0] != t.y.c * t.kh * t.kw
        || cv->shape[1] != t.y.n * t.ho * t.wo || t.ho == 0 || t.wo == 0) {
        PyErr_SetString(PyExc_ValueError, "col2im's columns must be (c * kh * kw, n * h' * w') of dx's dtype");
        release(&s);
        return NULL;
    }
    if (!disjoint(&s)) {
        release(&s);
        return NULL;
    }
    t.cols = cv->buf;
    Py_BEGIN_ALLOW_THREADS
    split(f[0] == 'f' ? col2im_range_f32 : col2im_range_f64, &t, t.y.n * t.y.c, t.y.h * t.y.w, 1);
    Py_END_ALLOW_THREADS
    release(&s);
    Py_RETURN_NONE;
}

/* maxpool(x, y, idx, kh, kw, sh, sw, ph, pw) and maxpool_grad(dy, idx, dx, kh, ...): images; idx uint8 images of
 * y's shape, the winning kernel offset of each output (windows of at most 256 values). */
static PyObject *maxpool_call(PyObject *args, int backward) {
    if (PyTuple_GET_SIZE(args) != 9) {
        PyErr_SetString(PyExc_TypeError, backward ? "maxpool_grad(dy, idx, dx, kh, kw, sh, sw, ph, pw)"
                                                  : "maxpool(x, y, idx, kh, kw, sh, sw, ph, pw)");
        return NULL;
    }
    WindowTask t;
    if (!window_args(args, 3, &t))
        return NULL;
    if (t.kh * t.kw > 256 || t.ph > t.kh / 2 || t.pw > t.kw / 2) {
        PyErr_SetString(PyExc_ValueError, "maxpool kernels take windows of at most 256 values, padding <= kernel / 2");
        return NULL;
    }
    PyObject *big = PyTuple_GET_ITEM(args, backward ? 2 : 0), *small = PyTuple_GET_ITEM(args, backward ? 0 : 1);
    const char *f = float_format(big);
    if (!f)
        return NULL;
    Buffers s = {.held = 0};
    Images *in = backward ? &t.y : &t.x, *out = backward ? &t.x : &t.y;
    int ok = hold_images(&s, big, backward, f, in) && hold_images(&s, small, !backward, f, out)
             && hold_images(&s, PyTuple_GET_ITEM(args, backward ? 1 : 2), !backward, "B", &t.idx);
    if (!ok) {
        release(&s);
        return NULL;
    }
    t.ho = out_len(in->h, t.kh, t.sh, t.ph);
    t.wo = out_len(in->w, t.kw, t.sw, t.pw);
    if (out->n != in->n || out->c != in->c || out->h != t.ho || out->w != t.wo || t.idx.n != in->n
        || t.idx.c != in->c || t.idx.h != t.ho || t.idx.w != t.wo || t.ho == 0 || t.wo == 0) {
        PyErr_SetString(PyExc_ValueError, "maxpool's output and winners must be (n, c, h', w') for its input");
        release(&s);
        return NULL;
    }
    if (!disjoint(&s)) {
        release(&s);
        return NULL;
    }
    range_fn fn = backward ? (f[0] == 'f' ? maxpool_grad_range_f32 : maxpool_grad_range_f64)
                           : (f[0] == 'f' ? maxpool_range_f32 : maxpool_range_f64);
    int lanes = maxpool_fast_lanes(&t, f[0] == 'f' ? 4 : 8, backward);
    if (lanes)
        fn = backward ? (lanes == 8 ? maxpool_grad_fast8_range : maxpool_grad_fast4_range)
                      : (lanes == 8 ? maxpool_fast8_range : maxpool_fast4_range);
    Py_BEGIN_ALLOW_THREADS
    split(fn, &t, in->n * in->c, in->h * in->w, 1);
    Py_END_ALLOW_THREADS
    release(&s);
    Py_RETURN_NONE;
}

static PyObject *py_maxpool(PyObject *self, PyObject *args) { return maxpool_call(args, 0); }
static PyObject *py_maxpool_grad(PyObject *self, PyObject *args) { return maxpool_call(args, 1); }

/* ---- module --------------------------------------------------------------------------------------------------- */

static PyObject *py_threads(PyObject *self, PyObject *args) { return PyLong_FromLong(kernel_threads()); }

static PyObject *py_pool(PyObject *self, PyObject *args) {
    if (!pool_run)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(pool_library);
}

static PyObject *py_set_threads(PyObject *self, PyObject *args) {
    int cap;
    if (!PyArg_ParseTuple(args, "i", &cap))
        return NULL;
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "set_threads takes 0 (as many as OpenBLAS uses) or a positive count");
        return NULL;
    }
    int old = thread_cap;
    thread_cap = cap;
    return PyLong_FromLong(old);
}

static PyObject *py_set_min_share(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n", &n))
        return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "min_share must be at least 1 element");
        return NULL;
    }
    Py_ssize_t old = min_share;
    min_share = n;
    return PyLong_FromSsize_t(old);
}

static PyMethodDef methods[] = {
    {"sgd", py_sgd, METH_VARARGS,
     "sgd(w, grad, buf, lr, momentum, dampening_factor, weight_decay, nesterov): one SGD step in place on w, buf"},
    {"adam", py_adam, METH_VARARGS,
     "adam(w, grad, m, v, vmax_or_None, b1, b2, inv_sqrt_c2, eps, step_size, wd, mode): one Adam step in place"},
    {"relu_grad", py_relu_grad, METH_VARARGS, "relu_grad(dy, y, dx): dx = dy * (y > 0), one pass (one dense layout)"},
    {"relu", py_relu, METH_VARARGS, "relu(x, y): y = maximum(x, 0), one pass (one dense layout)"},
    {"bias_relu", py_bias_relu, METH_VARARGS, "bias_relu(y, b): y = max(y + b, 0) in place, one pass"},
    {"bias_add", py_bias_add, METH_VARARGS, "bias_add(y, b): y += b in place (y (n, c), b (c,))"},
    {"bias_grad", py_bias_grad, METH_VARARGS, "bias_grad(dy, db): db = dy.sum(axis=0) (dy (n, c), db (c,))"},
    {"bias_add_rows", py_bias_add_rows, METH_VARARGS,
     "bias_add_rows(y, b): y += b[:, None] in place (y (c, n), b (c,))"},
    {"bias_relu_rows", py_bias_relu_rows, METH_VARARGS,
     "bias_relu_rows(y, b): y = maximum(y + b[:, None], 0) in place (y (c, n), b (c,)), one pass"},
    {"relu_grad_sum_rows", py_relu_grad_sum_rows, METH_VARARGS,
     "relu_grad_sum_rows(dy, y, dz, db): dz = dy * (y > 0); db = dz.sum(axis=1) in NumPy's pairwise order, one pass"},
    {"bias_grad_rows", py_bias_grad_rows, METH_VARARGS,
     "bias_grad_rows(dy, db): db = dy.sum(axis=1) with NumPy's pairwise order (dy (c, n), db (c,))"},
    {"relu_grad_sum", py_relu_grad_sum, METH_VARARGS,
     "relu_grad_sum(dy, y, dz, db): dz = dy * (y > 0) and db = dz.sum(axis=0), one pass"},
    {"scale_u8", py_scale_u8, METH_VARARGS, "scale_u8(x_uint8, scale, out): out = float(x) * scale, one pass"},
    {"take_scale_u8", py_take_scale_u8, METH_VARARGS,
     "take_scale_u8(x_uint8, rows_int64, scale, out): out = float(x[rows]) * scale, gather and conversion in one pass"},
    {"softmax_ce", py_softmax_ce, METH_VARARGS,
     "softmax_ce(z, labels, grad, scale) -> sum of per-row losses; grad = (softmax(z) - onehot) * scale"},
    {"gemm_tn", py_gemm_tn, METH_VARARGS,
     "gemm_tn(a, b, c, alpha, beta): c = alpha * a.T @ b + beta * c through NumPy's OpenBLAS (a, b: C-contiguous "
     "or transposed; c: (m, ...) of m * n elements)"},
    {"sgd_apply", py_sgd_apply, METH_VARARGS, "sgd_apply(w, buf, lr, wd): buf += wd * w (wd != 0); w = w - lr * buf, one pass"},
    {"im2col", py_im2col, METH_VARARGS,
     "im2col(x, cols, kh, kw, sh, sw, ph, pw): cols (c*kh*kw, n*h'*w') = the windows of images x (n, c, h, w)"},
    {"col2im", py_col2im, METH_VARARGS,
     "col2im(cols, dx, kh, kw, sh, sw, ph, pw): dx (n, c, h, w) = the columns summed back where im2col read them"},
    {"maxpool", py_maxpool, METH_VARARGS,
     "maxpool(x, y, idx, kh, kw, sh, sw, ph, pw): y = each window's max, idx (uint8) = its kernel offset"},
    {"maxpool_grad", py_maxpool_grad, METH_VARARGS,
     "maxpool_grad(dy, idx, dx, kh, kw, sh, sw, ph, pw): dx = dy routed to each window's winner"},
    {"threads", py_threads, METH_NOARGS, "threads() -> how many threads a big enough kernel is split over now"},
    {"pool", py_pool, METH_NOARGS, "pool() -> the OpenBLAS library whose threads the kernels share, or None"},
    {"set_threads", py_set_threads, METH_VARARGS,
     "set_threads(n) -> previous: at most n threads (0: as many as OpenBLAS uses)"},
    {"set_min_share", py_set_min_share, METH_VARARGS,
     "set_min_share(n) -> previous: the fewest elements worth a thread's share (tests lower it)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "Fused kernels for NumPy arrays (see backends/kernels.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    attach_pool();
    PyObject *m = PyModule_Create(&module);
    if (m && !gemm_s && PyObject_DelAttrString(m, "gemm_tn") != 0)   /* no GEMM found: no such kernel */
        Py_CLEAR(m);
    return m;
}
