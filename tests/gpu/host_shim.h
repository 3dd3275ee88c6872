// Host stand-ins for the CUDA built-ins that convcore/_gpu/*.cu use, so that the host C++ compiler
// compiles the very same kernel sources (tests/gpu/test_host_emulation.py).
#ifndef CONVCORE_HOST_SHIM_H
#define CONVCORE_HOST_SHIM_H

#define __host__
#define __device__
#define __global__

struct convcore_dim3 {
    unsigned x, y, z;
};

// Set by the emulator before each call of a kernel, as the hardware sets them for each thread.
static convcore_dim3 threadIdx, blockIdx, blockDim, gridDim;

#endif  // CONVCORE_HOST_SHIM_H
