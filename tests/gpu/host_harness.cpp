// Host emulation of convcore's CUDA kernels: compiles the generated kernel source (path in
// CONVCORE_KERNEL_SOURCE) with the host compiler and exposes, for each kernel K,
//   emu_K(grid, block, args)  runs K for every (blockIdx.x, threadIdx.x) of a 1-D launch, serially;
//                             args is cuLaunchKernel's kernelParams: one pointer per parameter
//   sig_K()                   the parameter kinds: 'p' pointer, 'i' long long, '?' anything else
#include <type_traits>
#include <utility>

#include "host_shim.h"
#include CONVCORE_KERNEL_SOURCE

namespace {

template <class P>
constexpr char kind()
{
    return std::is_pointer<P>::value ? 'p' : std::is_same<P, long long>::value ? 'i' : '?';
}

template <class... P>
const char* signature(void (*)(P...))
{
    static const char s[] = {kind<P>()..., '\0'};
    return s;
}

template <class... P, std::size_t... I>
void emulate(void (*kernel)(P...), long long grid, long long block, void** args,
             std::index_sequence<I...>)
{
    gridDim = {unsigned(grid), 1, 1};
    blockDim = {unsigned(block), 1, 1};
    for (long long b = 0; b < grid; ++b) {
        for (long long t = 0; t < block; ++t) {
            blockIdx = {unsigned(b), 0, 0};
            threadIdx = {unsigned(t), 0, 0};
            kernel(*static_cast<P*>(args[I])...);
        }
    }
}

template <class... P>
void emulate(void (*kernel)(P...), long long grid, long long block, void** args)
{
    emulate(kernel, grid, block, args, std::index_sequence_for<P...>{});
}

}  // namespace

#define CONVCORE_EMULATOR(K)                                                            \
    extern "C" void emu_##K(long long grid, long long block, void** args)               \
    {                                                                                   \
        emulate(K, grid, block, args);                                                  \
    }                                                                                   \
    extern "C" const char* sig_##K() { return signature(K); }

CONVCORE_EMULATOR(im2col)
CONVCORE_EMULATOR(col2im)
CONVCORE_EMULATOR(col2im_subpixel)
CONVCORE_EMULATOR(conv_direct)
CONVCORE_EMULATOR(conv_transpose_direct)
CONVCORE_EMULATOR(add_bias)
