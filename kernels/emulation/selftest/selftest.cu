// Small kernels that exercise the emulation shim: shared memory, barriers, grid-stride loops,
// atomics and barrier misuse. Written as ordinary CUDA (nvcc compiles this file too).

#define ST_BLOCK 256

// Tree reduction in shared memory: log2(256) barriers per block, one partial sum per block,
// plus a grid-wide atomic total.
__global__ void st_block_reduce(const float *in, int n, float *partial, float *total) {
    __shared__ float buf[ST_BLOCK];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = buf[0];
        atomicAdd(total, buf[0]);
    }
}

// Reverses each block's segment through shared memory; correct only with the barrier.
__global__ void st_reverse(const int *in, int *out, int use_barrier) {
    __shared__ int s[ST_BLOCK];
    int base = blockIdx.x * blockDim.x;
    s[threadIdx.x] = in[base + threadIdx.x];
    if (use_barrier) __syncthreads();
    out[base + threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}

// Grid-stride loop: a grid much smaller than the data.
__global__ void st_saxpy(int n, float a, const float *x, float *y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = a * x[i] + y[i];
    }
}

// Atomics across blocks: histogram (int add), max, min, CAS-claimed slots, unsigned long long.
__global__ void st_atomics(const int *vals, int n, int *hist, int nbins, int *vmax, int *vmin,
                           int *claim, unsigned long long *sum64) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int v = vals[i];
    atomicAdd(&hist[v % nbins], 1);
    atomicMax(vmax, v);
    atomicMin(vmin, v);
    atomicCAS(&claim[v % nbins], -1, i);
    atomicAdd(sum64, (unsigned long long)v);
}

// __syncthreads_count / _or / _and and 3D thread/block indices.
__global__ void st_vote_and_index(const int *flags, int *counts, int *ids) {
    int lin_t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int lin_b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int nt = blockDim.x * blockDim.y * blockDim.z;
    int g = lin_b * nt + lin_t;
    int f = flags[g];
    int c = __syncthreads_count(f);
    int o = __syncthreads_or(f);
    int a = __syncthreads_and(f);
    if (lin_t == 0) {
        counts[3 * lin_b] = c;
        counts[3 * lin_b + 1] = o;
        counts[3 * lin_b + 2] = a;
    }
    ids[g] = lin_b * 100000 + lin_t;
}

// Barrier misuse: thread 0 leaves while the others wait (undefined on a GPU; the shim aborts).
__global__ void st_exit_before_barrier(int *out) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Barrier misuse: two different __syncthreads() call sites in divergent branches.
__global__ void st_divergent_barrier(int *out) {
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
        out[threadIdx.x] = 1;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}
