# Time in the kernel: large reads of /dev/zero in a loop, called from Python. With `--native`,
# a sample taken in the kernel must show the system call's kernel frames under libc's read,
# under read_loop, down to the program's root (BPF takes the user registers saved on entry to
# the kernel for those samples).
#
# usage: native_read_zero.py
# Prints "ready" before the loop, then reads forever. Runs on Python 2.7 and 3.x.
import os


def read_loop(fd):
    while True:
        os.read(fd, 1 << 20)  # LINE:read


def main():
    fd = os.open("/dev/zero", os.O_RDONLY)
    os.write(1, b"ready\n")
    read_loop(fd)


main()
