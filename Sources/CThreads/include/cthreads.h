#ifndef AMP_CTHREADS_H
#define AMP_CTHREADS_H

/// Names the calling thread (at most 15 bytes are kept), as top -H and crash reports show it.
void amp_set_thread_name(const char *name);

#endif
