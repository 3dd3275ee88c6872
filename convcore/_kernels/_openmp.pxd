# The only file that touches omp.h. Without OpenMP the calls become serial no-ops and
# prange compiles to a plain loop, so every kernel builds either way.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CONVCORE_OPENMP 1
    /* Cython ends every prange with "omp for nowait": a parallel block whose second prange reads
       what the first wrote needs this between them, reached by every thread of the team */
    static inline void team_barrier(void) {
        #pragma omp barrier
    }
    #else
    #define CONVCORE_OPENMP 0
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_max_threads(void) { return 1; }
    static inline void team_barrier(void) {}
    #endif
    """
    const int CONVCORE_OPENMP
    int omp_get_thread_num() noexcept nogil
    int omp_get_max_threads() noexcept nogil
    void team_barrier() noexcept nogil
