/* The kernel's cost of one context switch, as the target sees it: two threads pinned to CPU 0
 * call sched_yield in turn for 2 s, so every yield is a switch. Prints "ns_per_yield=N".
 * Used by `bench/run.sh switch_cost` (docs/benchmarks.md). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

static volatile int stop;
static long counts[2];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *run(void *arg) {
    long i = (long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    while (!stop) {
        sched_yield();
        counts[i]++;
    }
    return 0;
}

int main(void) {
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
    double t0 = now();
    struct timespec d = {2, 0};
    nanosleep(&d, 0);
    stop = 1;
    double t1 = now();
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("ns_per_yield=%.1f\n", (t1 - t0) * 1e9 / (counts[0] + counts[1]));
    return 0;
}
