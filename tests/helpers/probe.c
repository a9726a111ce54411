/* rkt-probe: tries one privileged operation from inside a pod and prints what the kernel said,
 * as "<op>: ok" or "<op>: <ERRNO NAME>". Built static by the tests (tests/helpers/probe.py) and
 * packed into a test image, like rkt's own "inspect" test binary.
 *
 * Every operation is harmless to the machine even where it succeeds: files that would change the
 * machine (sysctls, cgroup release_agent) are only opened for writing, never written; a
 * filesystem is mounted read-only and detached (never attached anywhere); a key is looked up,
 * never created; a traced process is our own child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <linux/if_ether.h>
#include <unistd.h>

#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif

static int report(const char *op, int rc) {
    const char *label = getenv("PROBE_LABEL");  /* names the answer when one op is used twice */
    if (label && *label)
        op = label;
    if (rc >= 0)
        printf("%s: ok\n", op);
    else
        printf("%s: %s\n", op, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
    fflush(stdout);
    return 0;
}

/* fsopen + fsmount of a block device, read-only and detached */
static int fsmount_dev(const char *dev, const char *fstype) {
    int fs = (int)syscall(SYS_fsopen, fstype, 0);
    if (fs < 0)
        return report("fsopen", -1);
    report("fsopen", 0);
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return report("fsconfig", -1);
    int mnt = (int)syscall(SYS_fsmount, fs, 0, MOUNT_ATTR_RDONLY);
    report("fsmount", mnt);
    if (mnt >= 0)
        close(mnt);
    close(fs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe OP [ARGS]\n");
        return 2;
    }
    const char *op = argv[1];
    if (!strcmp(op, "mount-tmpfs") && argc == 3)
        return report(op, mount("probe", argv[2], "tmpfs", MS_RDONLY, NULL));
    if (!strcmp(op, "mount-cgroup") && argc == 4) {
        /* the v1 hierarchy of controller argv[3]; its release_agent is only opened */
        if (mount("cgroup", argv[2], "cgroup", 0, argv[3]) < 0)
            return report(op, -1);
        report(op, 0);
        char path[512];
        snprintf(path, sizeof path, "%s/release_agent", argv[2]);
        int fd = open(path, O_WRONLY);
        report("open-release_agent", fd);
        if (fd >= 0)
            close(fd);
        return umount2(argv[2], MNT_DETACH), 0;
    }
    if (!strcmp(op, "mknod-block") && argc == 6) {
        /* mknod PATH MAJOR MINOR FSTYPE, then open it and mount it read-only, detached */
        dev_t d = makedev(atoi(argv[3]), atoi(argv[4]));
        report("mknod", mknod(argv[2], S_IFBLK | 0600, d));
        int fd = open(argv[2], O_RDONLY);
        report("open-device", fd);
        if (fd >= 0)
            close(fd);
        fsmount_dev(argv[2], argv[5]);
        return unlink(argv[2]), 0;
    }
    if (!strcmp(op, "mknod-char") && argc == 5) {
        /* mknod PATH MAJOR MINOR as a character device and open it (closed at once) */
        report("mknod-char", mknod(argv[2], S_IFCHR | 0600, makedev(atoi(argv[3]), atoi(argv[4]))));
        int fd = open(argv[2], O_RDWR);
        report("open-chardev", fd);
        if (fd >= 0)
            close(fd);
        return unlink(argv[2]), 0;
    }
    if (!strcmp(op, "open-write") && argc == 3) {
        int fd = open(argv[2], O_WRONLY);
        report(op, fd);
        return fd >= 0 ? close(fd) : 0;
    }
    if (!strcmp(op, "read") && argc == 3) {
        char buf[64];
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0)
            return report(op, -1);
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        return report(op, n > 0 ? 0 : (n == 0 ? (errno = ENODATA, -1) : -1));
    }
    if (!strcmp(op, "unshare-user"))
        return report(op, unshare(CLONE_NEWUSER));
    if (!strcmp(op, "unshare-mount"))
        return report(op, unshare(CLONE_NEWNS));
    if (!strcmp(op, "ptrace")) {
        pid_t child = fork();
        if (child == 0) {
            pause();
            _exit(0);
        }
        long rc = ptrace(PTRACE_ATTACH, child, NULL, NULL);
        report(op, rc < 0 ? -1 : 0);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return 0;
    }
    if (!strcmp(op, "bpf"))  /* BPF_MAP_CREATE with no attributes: EINVAL where bpf() is allowed */
        return report(op, (int)syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(op, "keyring"))  /* KEYCTL_GET_KEYRING_ID of the user keyring, create=0 */
        return report(op, (int)syscall(SYS_keyctl, 0, -4, 0));
    if (!strcmp(op, "raw-socket")) {
        int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        report(op, s);
        return s >= 0 ? close(s) : 0;
    }
    if (!strcmp(op, "packet-socket")) {
        int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
        report(op, s);
        return s >= 0 ? close(s) : 0;
    }
    if (!strcmp(op, "mkdir") && argc == 3) {
        report(op, mkdir(argv[2], 0700));
        return rmdir(argv[2]), 0;
    }
    if (!strcmp(op, "chown") && argc == 3)
        return report(op, chown(argv[2], 1, 1));
    if (!strcmp(op, "bind-low-port")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        report(op, bind(s, (struct sockaddr *)&a, sizeof a));
        return close(s);
    }
    fprintf(stderr, "probe: unknown operation %s\n", op);
    return 2;
}
