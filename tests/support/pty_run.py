"""Runs a command on a pseudo-terminal, answering prompts: the tests' stand-in for an operator
at a terminal. Usage: pty_run.py STEPS COMMAND [ARGS...], where STEPS is a JSON list of
[text to wait for, keys to send]. Prints everything the command wrote, then EXIT=<code>.
With PTY_COLUMNS set, the terminal reports that many columns (0: a terminal that reports no
width, as `docker exec -t` does)."""
import json, os, pty, sys, time, select, fcntl, termios, struct
# usage: pty_run.py "<keys script as python list literal>" cmd args...
steps = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    if "PTY_COLUMNS" in os.environ:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, int(os.environ["PTY_COLUMNS"]), 0, 0))
    os.execvp(sys.argv[2], sys.argv[2:])
out = b""
def read_until(pat, timeout=20):
    global out
    end = time.time() + timeout
    while pat.encode() not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
for wait, send in steps:
    read_until(wait)
    time.sleep(0.2)
    os.write(fd, send.encode())
while True:
    try:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk: break
            out += chunk
        else:
            p, status = os.waitpid(pid, os.WNOHANG)
            if p: break
    except OSError:
        break
if 'status' not in dir():
    _, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\nEXIT=%d\n" % os.waitstatus_to_exitcode(status))
