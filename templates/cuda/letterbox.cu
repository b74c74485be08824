// tritonforge: fused letterbox preprocessing for the GPU preprocess stage.
//
// One kernel does the whole preprocess of one image, writing into slot `batch_index`
// of a batched output [N, 3, out_h, out_w]:
//   bilinear resize (OpenCV INTER_LINEAR, uint8) of an HWC BGR uint8 image to
//   new_h x new_w, placed at (top, left), padding 114 around it, BGR -> RGB,
//   x / 255, HWC -> CHW, stored as float32 or float16.
//
// The arithmetic copies what cv::resize does for 8-bit images (x86 build of
// opencv-python 4.x), so the result is the CPU preprocess's, not only close to it:
//   - source coordinate fx = (float)((dx + 0.5) * scale - 0.5) computed in double,
//     scale = 1 / (new / src) as cv::resize computes it;
//   - weights rounded to 11-bit fixed point (2048), half to even (cvRound);
//   - x: at the borders the fraction is dropped (sx < 0 -> 0, sx >= w-1 -> w-1);
//     y: the fraction is kept and the two source rows are clamped into the image;
//   - rows combined as ((b0*(h0>>4))>>16) + ((b1*(h1>>4))>>16) + 2 >> 2 (the
//     rounding of OpenCV's SIMD vertical pass);
//   - the uint8 value v then becomes (float)v * (float)(1/255), as numpy does.
//
// The per-pixel arithmetic lives in __host__ __device__ functions, so the same
// file builds the CPU reference of the kernel:
//   g++ -x c++ -O2 -ffp-contract=off -shared -fPIC -DTRITONFORGE_HOST_REFERENCE letterbox.cu
//   (or nvcc -DTRITONFORGE_HOST_REFERENCE -shared -Xcompiler -fPIC,-ffp-contract=off)
// exposes extern "C" letterbox_host_f32 / letterbox_host_f16, which run the
// identical per-pixel code in a loop over the image (loaded with ctypes in tests).
//
// Entry points (extern "C", so pycuda finds them by name):
//   __global__ letterbox_f32(const uint8* src, float*  dst, double scale_x, double scale_y,
//                            int src_h, int src_w, int src_stride, int batch_index,
//                            int out_h, int out_w, int new_h, int new_w, int top, int left)
//   __global__ letterbox_f16(... same, __half* dst ...)
//   host reference: letterbox_host_f32 / letterbox_host_f16 (uint16 bits of the halves),
//   same arguments, return 0 (or -1 on bad arguments).
// Launch: block (32, 8), grid (ceil(out_w / 32), ceil(out_h / 8)); one thread per
// output pixel (all three channels). src_stride is in bytes; pointers are device
// pointers for the kernels, host pointers for the host reference.

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#else
// plain C++ compiler (the host reference): CUDA qualifiers mean nothing
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TF_HD __host__ __device__
#define TF_PAD_VALUE 114
#define TF_COEF_SCALE 2048.0f
// numpy: canvas.astype(float32) * float32(1.0 / 255.0)
#define TF_INV255 ((float)(1.0 / 255.0))

// double ops that nvcc must not fuse into an FMA (the CPU does two roundings)
static TF_HD inline double tf_dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

static TF_HD inline double tf_dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}

// cvRound: nearest, ties to even (the default rounding mode on the host)
static TF_HD inline int tf_round(float v) {
#if defined(__CUDA_ARCH__)
    return __float2int_rn(v);
#else
    return (int)rintf(v);
#endif
}

static TF_HD inline int tf_clamp(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// One axis of the bilinear map: the two source indices and their 11-bit weights.
struct TfTap {
    int i0, i1;
    int w0, w1;
};

// output index d (0 <= d < dst) of a src -> dst resize along one axis
static TF_HD inline TfTap tf_tap(int d, int src, double scale, bool drop_fraction_at_borders) {
    float f = (float)tf_dsub(tf_dmul((double)d + 0.5, scale), 0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    TfTap t;
    if (drop_fraction_at_borders) {  // cv::resize, x axis
        if (s < 0) {
            s = 0;
            f = 0.0f;
        }
        if (s >= src - 1) {
            s = src - 1;
            f = 0.0f;
        }
        t.i0 = s;
        t.i1 = s + 1 < src ? s + 1 : src - 1;
    } else {  // cv::resize, y axis: rows clamped, fraction kept
        t.i0 = tf_clamp(s, 0, src - 1);
        t.i1 = tf_clamp(s + 1, 0, src - 1);
    }
    t.w0 = tf_round((1.0f - f) * TF_COEF_SCALE);
    t.w1 = tf_round(f * TF_COEF_SCALE);
    return t;
}

// Interpolated uint8 value of channel c (in source order) at taps (tx, ty).
static TF_HD inline int tf_bilinear(const unsigned char* src, int stride, TfTap tx, TfTap ty, int c) {
    const unsigned char* r0 = src + (size_t)ty.i0 * (size_t)stride;
    const unsigned char* r1 = src + (size_t)ty.i1 * (size_t)stride;
    int x0 = tx.i0 * 3 + c, x1 = tx.i1 * 3 + c;
    int h0 = (int)r0[x0] * tx.w0 + (int)r0[x1] * tx.w1;  // horizontal pass, scale 2048
    int h1 = (int)r1[x0] * tx.w0 + (int)r1[x1] * tx.w1;
    int v = (((ty.w0 * (h0 >> 4)) >> 16) + ((ty.w1 * (h1 >> 4)) >> 16) + 2) >> 2;
    return tf_clamp(v, 0, 255);
}

struct TfLetterbox {
    int src_h, src_w, src_stride;
    int out_h, out_w, new_h, new_w, top, left;
    double scale_x, scale_y;
};

// The whole per-pixel computation: output pixel (x, y) -> R, G, B in 0..255.
static TF_HD inline void tf_letterbox_pixel(const TfLetterbox& p, const unsigned char* src, int x, int y,
                                            int rgb[3]) {
    int rx = x - p.left, ry = y - p.top;
    if (rx < 0 || ry < 0 || rx >= p.new_w || ry >= p.new_h) {
        rgb[0] = rgb[1] = rgb[2] = TF_PAD_VALUE;
        return;
    }
    TfTap tx = tf_tap(rx, p.src_w, p.scale_x, true);
    TfTap ty = tf_tap(ry, p.src_h, p.scale_y, false);
    rgb[0] = tf_bilinear(src, p.src_stride, tx, ty, 2);  // BGR source -> RGB output
    rgb[1] = tf_bilinear(src, p.src_stride, tx, ty, 1);
    rgb[2] = tf_bilinear(src, p.src_stride, tx, ty, 0);
}

static TF_HD inline float tf_unit(int v) { return (float)v * TF_INV255; }

static TF_HD inline TfLetterbox tf_params(double scale_x, double scale_y, int src_h, int src_w, int src_stride,
                                          int out_h, int out_w, int new_h, int new_w, int top, int left) {
    TfLetterbox p;
    p.src_h = src_h;
    p.src_w = src_w;
    p.src_stride = src_stride;
    p.out_h = out_h;
    p.out_w = out_w;
    p.new_h = new_h;
    p.new_w = new_w;
    p.top = top;
    p.left = left;
    p.scale_x = scale_x;
    p.scale_y = scale_y;
    return p;
}

#if defined(__CUDACC__)

template <typename T>
struct TfStore;

template <>
struct TfStore<float> {
    static __device__ inline float cast(int v) { return tf_unit(v); }
};

template <>
struct TfStore<__half> {
    static __device__ inline __half cast(int v) { return __float2half_rn(tf_unit(v)); }
};

template <typename T>
static __device__ inline void tf_letterbox_kernel(const unsigned char* __restrict__ src, T* __restrict__ dst,
                                                  const TfLetterbox& p, int batch_index) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= p.out_w || y >= p.out_h) return;
    int rgb[3];
    tf_letterbox_pixel(p, src, x, y, rgb);
    size_t plane = (size_t)p.out_h * (size_t)p.out_w;
    T* out = dst + (size_t)batch_index * 3 * plane + (size_t)y * (size_t)p.out_w + (size_t)x;
    out[0] = TfStore<T>::cast(rgb[0]);
    out[plane] = TfStore<T>::cast(rgb[1]);
    out[2 * plane] = TfStore<T>::cast(rgb[2]);
}

extern "C" __global__ void letterbox_f32(const unsigned char* __restrict__ src, float* __restrict__ dst,
                                         double scale_x, double scale_y, int src_h, int src_w, int src_stride,
                                         int batch_index, int out_h, int out_w, int new_h, int new_w, int top,
                                         int left) {
    TfLetterbox p = tf_params(scale_x, scale_y, src_h, src_w, src_stride, out_h, out_w, new_h, new_w, top, left);
    tf_letterbox_kernel<float>(src, dst, p, batch_index);
}

extern "C" __global__ void letterbox_f16(const unsigned char* __restrict__ src, __half* __restrict__ dst,
                                         double scale_x, double scale_y, int src_h, int src_w, int src_stride,
                                         int batch_index, int out_h, int out_w, int new_h, int new_w, int top,
                                         int left) {
    TfLetterbox p = tf_params(scale_x, scale_y, src_h, src_w, src_stride, out_h, out_w, new_h, new_w, top, left);
    tf_letterbox_kernel<__half>(src, dst, p, batch_index);
}

#endif  // __CUDACC__

#if defined(TRITONFORGE_HOST_REFERENCE)

// float -> IEEE half bits, round to nearest even: what the kernel's __float2half_rn and
// numpy's astype(float16) do
static inline uint16_t tf_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds past 65504
    if (ax < 0x38800000u) {                                     // half subnormal or zero
        if (ax < 0x33000000u) return (uint16_t)sign;
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = (ax - 0x38000000u) >> 13;
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}


static int tf_check(const TfLetterbox& p, int batch_index) {
    if (p.src_h < 1 || p.src_w < 1 || p.src_stride < 3 * p.src_w || p.out_h < 1 || p.out_w < 1) return -1;
    if (p.new_h < 1 || p.new_w < 1 || p.top < 0 || p.left < 0 || batch_index < 0) return -1;
    if (p.top + p.new_h > p.out_h || p.left + p.new_w > p.out_w) return -1;
    return 0;
}

static float tf_host_f32(int v) { return tf_unit(v); }
static uint16_t tf_host_f16(int v) { return tf_half_bits(tf_unit(v)); }

// the whole image on the CPU, pixel by pixel, with the kernel's per-pixel arithmetic
template <typename Out, Out (*Cast)(int)>
static int tf_host_letterbox(const unsigned char* src, Out* dst, double scale_x, double scale_y, int src_h,
                             int src_w, int src_stride, int batch_index, int out_h, int out_w, int new_h, int new_w,
                             int top, int left) {
    TfLetterbox p = tf_params(scale_x, scale_y, src_h, src_w, src_stride, out_h, out_w, new_h, new_w, top, left);
    if (tf_check(p, batch_index) != 0) return -1;
    size_t plane = (size_t)out_h * (size_t)out_w;
    Out* base = dst + (size_t)batch_index * 3 * plane;
    for (int y = 0; y < out_h; ++y) {
        for (int x = 0; x < out_w; ++x) {
            int rgb[3];
            tf_letterbox_pixel(p, src, x, y, rgb);
            size_t i = (size_t)y * (size_t)out_w + (size_t)x;
            base[i] = Cast(rgb[0]);
            base[plane + i] = Cast(rgb[1]);
            base[2 * plane + i] = Cast(rgb[2]);
        }
    }
    return 0;
}

extern "C" int letterbox_host_f32(const unsigned char* src, float* dst, double scale_x, double scale_y, int src_h,
                                  int src_w, int src_stride, int batch_index, int out_h, int out_w, int new_h,
                                  int new_w, int top, int left) {
    return tf_host_letterbox<float, tf_host_f32>(src, dst, scale_x, scale_y, src_h, src_w, src_stride, batch_index,
                                                 out_h, out_w, new_h, new_w, top, left);
}

extern "C" int letterbox_host_f16(const unsigned char* src, uint16_t* dst, double scale_x, double scale_y, int src_h,
                                  int src_w, int src_stride, int batch_index, int out_h, int out_w, int new_h,
                                  int new_w, int top, int left) {
    return tf_host_letterbox<uint16_t, tf_host_f16>(src, dst, scale_x, scale_y, src_h, src_w, src_stride,
                                                    batch_index, out_h, out_w, new_h, new_w, top, left);
}

#endif  // TRITONFORGE_HOST_REFERENCE
