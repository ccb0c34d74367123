/* Repeated double-precision matrix products through CBLAS: `dgemm N ITERS`.
 *
 * Linked against whichever OpenBLAS build the test or benchmark chooses, e.g. Debian's OpenMP
 * build, whose pool is libgomp's team and obeys OMP_NUM_THREADS only:
 *   D=/usr/lib/x86_64-linux-gnu/openblas-openmp
 *   gcc -O2 dgemm.c -o dgemm $D/libopenblas.so.0 -Wl,-rpath,$D
 * The prototype is declared here so that no BLAS headers are needed.
 */
#include <stdio.h>
#include <stdlib.h>

void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a,
                 int lda, const double *b, int ldb, double beta, double *c, int ldc);

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 256;
    int iters = argc > 2 ? atoi(argv[2]) : 100;
    double *a = malloc(sizeof(double) * n * n);
    double *b = malloc(sizeof(double) * n * n);
    double *c = malloc(sizeof(double) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = 1.0 / (i % 97 + 1);
        b[i] = (i % 13) * 0.01;
        c[i] = 0;
    }
    /* 101 = CblasRowMajor, 111 = CblasNoTrans */
    for (int k = 0; k < iters; k++)
        cblas_dgemm(101, 111, 111, n, n, n, 1.0, a, n, b, n, 0.5, c, n);
    printf("%f\n", c[n + 1]);
    return 0;
}
