/* The kqueue backend's kernel calls, for poller.c, which keeps the registration table (shared with
 * the other backends). Stateless: each call names the whole interest of one fd. */
#ifndef FASTMSG_POLLER_KQUEUE_H
#define FASTMSG_POLLER_KQUEUE_H

#include "net/poller.h"

/* Adds `events` for fd to out[0..k): to fd's entry if it has one, else as a new entry (data NULL);
 * returns the new count. kqueue reports an fd's read and write readiness apart, epoll as one event;
 * this gives kqueue epoll's form. Compiled everywhere, so that the self-test checks it here too. */
int fm_poll_merge(fastmsg_poll_event *out, int k, int fd, uint32_t events);

#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
#define FASTMSG_HAVE_KQUEUE 1

/* A new kqueue, close-on-exec: its fd, or -errno. */
int fm_kqueue_open(void);

/* Makes the kernel watch exactly `events` (FASTMSG_POLL_IN/OUT) of fd: each filter added or
 * deleted, one system call. Safe from any thread. 0, or -errno. */
int fm_kqueue_set(int kq, int fd, uint32_t events);

/* Waits as fastmsg_poller_wait does; fills out[] with one entry per fd (data NULL). */
int fm_kqueue_wait(int kq, fastmsg_poll_event *out, int max, int timeout_ms);

#endif
#endif
