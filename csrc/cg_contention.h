/* Graceful degradation under CPU contention: how many CPUs other processes leave us.
 *
 * A fork-join region waits for its slowest thread. When another process keeps a CPU
 * busy, one of our team's threads shares a core with it and is descheduled for whole
 * time slices, so every region waits milliseconds: on 2 CPUs with one busy neighbour a
 * 2-thread MLP step ran 3-4x slower than with 1 thread. So before a kernel forks, the
 * team is capped at the CPUs not taken by other processes:
 *
 *   others = runnable tasks in the system (/proc/loadavg) - runnable threads of ours
 *            (/proc/self/task/STAR/stat, state R)
 *   team   = min(wanted, max(1, cpus - others)),   cpus = CPUs in our affinity mask
 *
 * The two files are read at most every CG_PROBE_NS (a clock read per kernel call
 * otherwise), so the cost is a few microseconds per 50 ms. Results do not depend on the
 * team size (every kernel is bitwise identical for any thread count), so only speed
 * changes. Linux only; elsewhere, or with CYGRAD_ADAPTIVE_THREADS=0, the team is what
 * was asked for. */
#ifndef CG_CONTENTION_H
#define CG_CONTENTION_H

#define CG_PROBE_NS 50000000LL /* 50 ms between probes */

static int cg_adaptive = 0;      /* set at import (on by default on Linux) */
static int cg_cpus = 1;          /* CPUs we may run on */
static long long cg_probe_due = 0;
static int cg_free = 1 << 30;    /* CPUs other processes left us at the last probe */

#if defined(__linux__)
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long cg_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* the first `size` - 1 bytes of a small /proc file, NUL-terminated; -1 on failure */
static int cg_read_small(const char *path, char *buf, int size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int n = (int)read(fd, buf, (size_t)size - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return n;
}

/* runnable tasks in the system: the R of /proc/loadavg's "R/T" field */
static int cg_running_total(void) {
    char buf[256];
    if (cg_read_small("/proc/loadavg", buf, sizeof buf) < 0) return -1;
    char *slash = strchr(buf, '/');
    if (!slash) return -1;
    char *start = slash;
    while (start > buf && start[-1] != ' ') start--;
    return atoi(start);
}

/* our threads in state R (the state follows the last ')' of /proc/self/task/ID/stat) */
static int cg_running_ours(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int count = 0;
    struct dirent *e;
    char path[64], buf[512];
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
        if (cg_read_small(path, buf, sizeof buf) <= 0) continue;
        char *paren = strrchr(buf, ')');
        if (paren && paren[1] == ' ' && paren[2] == 'R') count++;
    }
    closedir(dir);
    return count;
}

static void cg_contention_init(int enabled) {
    cpu_set_t set;
    CPU_ZERO(&set);
    cg_cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    if (cg_cpus < 1) cg_cpus = 1;
    cg_adaptive = enabled && cg_running_total() >= 0 && cg_running_ours() >= 0;
}

/* CPUs other processes leave us now (probing at most every CG_PROBE_NS) */
static int cg_free_cpus(void) {
    long long now = cg_now_ns();
    if (now >= __atomic_load_n(&cg_probe_due, __ATOMIC_RELAXED)) {
        __atomic_store_n(&cg_probe_due, now + CG_PROBE_NS, __ATOMIC_RELAXED);
        int total = cg_running_total(), ours = cg_running_ours();
        int free_cpus = 1 << 30;
        if (total >= 0 && ours >= 0) {
            int others = total - ours;
            free_cpus = cg_cpus - (others > 0 ? others : 0);
            if (free_cpus < 1) free_cpus = 1;
        }
        __atomic_store_n(&cg_free, free_cpus, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&cg_free, __ATOMIC_RELAXED);
}
#else
static void cg_contention_init(int enabled) { (void)enabled; cg_adaptive = 0; }
static int cg_free_cpus(void) { return 1 << 30; }
#endif

/* the team for `wanted` threads, capped at the CPUs others leave us when adaptive */
static int cg_team_size(int wanted) {
    if (!cg_adaptive || wanted < 2) return wanted;
    int free_cpus = cg_free_cpus();
    return wanted < free_cpus ? wanted : free_cpus;
}

#endif
