/* What a recorder's tick costs on this host: the CPU of a thread's wake-up and of the reads a
 * sampler makes right after it, while every core runs a busy process (as under a recording of
 * an oversubscribed program). One busy child per core walks 8 MiB of its own memory in a loop;
 * this thread sleeps S µs, then reads 4 KiB of a child's memory (process_vm_readv), its main
 * thread's `stat` and its `schedstat`, 500 times per S, and prints the CPU of each step (its
 * own CLOCK_THREAD_CPUTIME_ID around it). On the nested paravirtual host of the thirteenth
 * session a 10 ms sleep cost 40-50 µs and the first reads after it 1.4-6 times their cost back
 * to back (docs/benchmarks.md).
 * Used by `bench/run.sh host`. Needs root (or ptrace rights over its children). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AREA (8u << 20)

static double cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static char *area;

static void busy(void) {
    for (unsigned long i = 0;; i += 64) area[i % AREA] += 1;
}

int main(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    area = malloc(AREA);
    memset(area, 1, AREA);
    pid_t kids[64];
    int n = cores < 64 ? (int)cores : 64;
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] == 0) busy();
    }
    usleep(200000);
    static char buf[8192];
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", kids[0], kids[0]);
    int stat_fd = open(path, O_RDONLY);
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", kids[0], kids[0]);
    int sched_fd = open(path, O_RDONLY);
    if (stat_fd < 0 || sched_fd < 0) {
        perror("open the busy child's stat and schedstat");
        goto out;
    }
    const int sleeps[] = {0, 1000, 10000};
    for (unsigned s = 0; s < sizeof sleeps / sizeof sleeps[0]; s++) {
        double wake = 0, readv = 0, stat = 0, sched = 0;
        const int reps = 500;
        for (int i = 0; i < reps; i++) {
            double a = cpu_us();
            if (sleeps[s]) usleep(sleeps[s]);
            double b = cpu_us();
            struct iovec local = {buf, 4096}, remote = {area + (i % 2048) * 4096, 4096};
            if (process_vm_readv(kids[0], &local, 1, &remote, 1, 0) != 4096) {
                perror("process_vm_readv");
                goto out;
            }
            double c = cpu_us();
            if (pread(stat_fd, buf, sizeof buf, 0) <= 0) perror("stat");
            double d = cpu_us();
            if (pread(sched_fd, buf, sizeof buf, 0) <= 0) perror("schedstat");
            double e = cpu_us();
            wake += b - a;
            readv += c - b;
            stat += d - c;
            sched += e - d;
        }
        printf("sleep %5d us: wake-up %5.1f  process_vm_readv 4 KiB %5.1f  stat %5.1f  "
               "schedstat %5.1f  (us of this thread's CPU each, %ld busy cores)\n",
               sleeps[s], wake / reps, readv / reps, stat / reps, sched / reps, cores);
    }
out:
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    while (wait(0) > 0) {}
    return 0;
}
