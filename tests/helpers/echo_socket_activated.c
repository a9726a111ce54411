/* A socket-activated echo server for the tests (rkt's echo-socket-activated): it serves the
 * listening socket systemd passed as fd 3 (sd_listen_fds), echoing one line per connection.
 * Built static, so it runs in a busybox image. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *n = getenv("LISTEN_FDS");
    if (n == NULL || atoi(n) < 1) {
        static const char msg[] = "no socket passed (LISTEN_FDS)\n";
        write(2, msg, sizeof msg - 1);
        return 3;
    }
    for (;;) {
        int c = accept(3, NULL, NULL);
        if (c < 0)
            return 1;
        char buf[256];
        ssize_t got = read(c, buf, sizeof buf);
        if (got > 0)
            write(c, buf, (size_t)got);
        close(c);
    }
}
