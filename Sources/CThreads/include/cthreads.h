#ifndef AMP_CTHREADS_H
#define AMP_CTHREADS_H

/// Names the calling thread (at most 15 bytes are kept), as top -H and crash reports show it.
void amp_set_thread_name(const char *name);

/// The number of CPUs in the calling thread's affinity mask (sched_getaffinity(2)), or 0.
int amp_affinity_cpu_count(void);

#endif
