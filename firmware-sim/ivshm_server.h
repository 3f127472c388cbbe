/* SPDX-License-Identifier: MIT */
/*
 * ivshm_server.h - the server side of QEMU's ivshmem client-server protocol
 * (docs/specs/ivshmem-spec.txt): a listening unix socket and the 8-byte
 * messages, each optionally carrying one file descriptor (SCM_RIGHTS).
 */
#ifndef IVSHM_SERVER_H
#define IVSHM_SERVER_H

#include <stdint.h>

#define IVSHM_PROTOCOL_VERSION	0

/*
 * Create a listening unix stream socket at @path (non-blocking, close on
 * exec).  A stale socket file nobody listens on is replaced; a live one is
 * an error (-EADDRINUSE).  Returns the fd or -errno.
 */
int ivshm_listen(const char *path);

/* Accept one client (non-blocking, close on exec); fd or -errno. */
int ivshm_accept(int lfd);

/*
 * Send one message: the little-endian 64-bit @val, with @fd attached when
 * @fd >= 0.  Never blocks (the messages of a connection are small); returns
 * 0 or -errno.
 */
int ivshm_send(int sock, int64_t val, int fd);

#endif /* IVSHM_SERVER_H */
