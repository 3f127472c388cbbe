// SPDX-License-Identifier: MIT
/*
 * ivshm_server.c - listening socket and message encoding of the ivshmem
 * server protocol.  The per-client message sequence is devif.c's business.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ivshm_server.h"

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!path || !*path || strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

/* Is someone listening on @path?  1 yes, 0 no. */
static int socket_alive(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int alive;

	if (fd < 0)
		return 0;
	alive = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return alive;
}

int ivshm_listen(const char *path)
{
	struct sockaddr_un sa, tmp;
	struct stat st;
	int fd, rc;

	rc = fill_addr(&sa, path);
	if (rc)
		return rc;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (socket_alive(&sa))
			return -EADDRINUSE;
		unlink(path);
	}
	/*
	 * Bind under a temporary name and rename it into place once it
	 * listens: whoever sees @path can connect (a connect between bind and
	 * listen would be refused).
	 */
	if (snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld", path,
		     (long)getpid()) >= (int)sizeof(tmp.sun_path))
		tmp = sa;	/* no room for a suffix: bind in place */
	tmp.sun_family = AF_UNIX;
	unlink(tmp.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (listen(fd, 16) < 0 ||
	    (strcmp(tmp.sun_path, path) != 0 && rename(tmp.sun_path, path) < 0)) {
		rc = -errno;
		unlink(tmp.sun_path);
		close(fd);
		return rc;
	}
	return fd;
}

int ivshm_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int ivshm_send(int sock, int64_t val, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	int64_t le = (int64_t)htole64((uint64_t)val);
	struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	do {
		n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(le) ? 0 : -EIO;
}
