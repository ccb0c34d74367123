/* Many short OpenMP parallel regions: `omp_regions REGIONS`.
 *
 * Each region is a 20000-iteration reduction, a few microseconds of work per thread, so the
 * team's fork/join barrier is most of the cost: the shape that suffers when two such
 * processes share the cores. Compiled with `clang -fopenmp` (LLVM libomp) or `gcc -fopenmp`.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long regions = argc > 1 ? atol(argv[1]) : 20000;
    double s = 0;
    for (long r = 0; r < regions; r++) {
#pragma omp parallel for reduction(+ : s)
        for (int j = 0; j < 20000; j++) s += (j ^ r) * 0.5;
    }
    printf("%f\n", s);
    return 0;
}
