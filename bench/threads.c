/* threads N SECONDS: N threads that each wake every 100 ms, burn ~0.1 ms of CPU and sleep
 * again, for SECONDS: a large service's thread pool, cheap to run, costly to record (every
 * thread is polled every interval). For bench/run.sh memory. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double seconds;

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    (void)arg;
    double end = now(CLOCK_MONOTONIC) + seconds;
    volatile unsigned long x = 0;
    while (now(CLOCK_MONOTONIC) < end) {
        double until = now(CLOCK_THREAD_CPUTIME_ID) + 0.0001;
        while (now(CLOCK_THREAD_CPUTIME_ID) < until) x++;
        usleep(100000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: threads N SECONDS\n");
        return 2;
    }
    int n = atoi(argv[1]);
    seconds = atof(argv[2]);
    pthread_t *th = calloc(n, sizeof *th);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (int i = 0; i < n; i++) pthread_create(&th[i], &a, worker, NULL);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    return 0;
}
