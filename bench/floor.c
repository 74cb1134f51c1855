/*
 * The floor of the benchmark: the least a program can do to start a command in a
 * container, with no error messages, no state and no checks.
 *
 *   floor ROOTFS COMMAND...
 *
 * clone() with new mount, pid, uts, ipc and network namespaces; in the child:
 * make / private, bind the root filesystem onto itself, pivot_root into it,
 * detach the old root, mount /proc, exec. The parent waits and returns the
 * command's status. Built by bench/run with cc -O2.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[64 * 1024];
static char **argv_;

static int child(void *arg) {
    (void)arg;
    const char *root = argv_[1];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return 101;
    if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) != 0) return 102;
    if (chdir(root) != 0) return 103;
    if (syscall(SYS_pivot_root, ".", ".") != 0) return 104;
    if (umount2(".", MNT_DETACH) != 0) return 105;
    if (chdir("/") != 0) return 106;
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) return 107;
    execv(argv_[2], &argv_[2]);
    return 127;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floor ROOTFS COMMAND...\n");
        return 2;
    }
    argv_ = argv;
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD;
    pid_t pid = clone(child, stack + sizeof stack, flags, NULL);
    if (pid < 0) {
        perror("clone");
        return 1;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
