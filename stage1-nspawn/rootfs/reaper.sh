#!/bin/sh
# ExecStop of reaper-<app>.service: runs after <app>.service stopped.
#   reaper.sh APP ROOTFS PROGRAM
# Records the app's exit status in /rkt/status/<app>, then ends the pod: at once with the
# app's status if it failed, or once every app has a status. The first reaper to claim
# /rkt/exit-claimed decides the pod's exit code; later ones (apps stopped because the pod is
# going down) only record their status.
claim() {
    (set -C; : > /rkt/exit-claimed) 2>/dev/null || exit 0
    # in a VM (the kvm stage1 marks it) a system manager cannot exit: it powers off, and the
    # stage1 reads the statuses
    [ -e /rkt/vm ] && exec /usr/bin/systemctl --no-block poweroff
    exec /usr/bin/systemctl --no-block exit "$1"
}

app="$1"
show='' st=0 code=0 main_pid=0 result=success
# one query (each systemctl call costs a process start on the pod's way down), retried a
# little: an answer is what we want
for try in 1 2 3; do
    show=$(/usr/bin/systemctl show --property=ExecMainStatus,ExecMainCode,ExecMainPID,Result \
               "$app.service" 2>/dev/null) && break
    show=''
    /usr/bin/sleep 0.05
done
if [ -n "$show" ]; then
    while IFS='=' read -r key value; do
        case "$key" in
            ExecMainStatus) st=${value:-0} ;;
            ExecMainCode) code=${value:-0} ;;
            ExecMainPID) main_pid=$value ;;
            Result) result=$value ;;
        esac
    done <<EOF_SHOW
$show
EOF_SHOW
    # killed (2) or dumped (3) by signal N: 128+N, as a shell reports it
    case "$code" in 2|3) st=$((128 + st)) ;; esac
    # A service that failed before its main process ran (a failing pre-start event handler)
    # has no main status: the app failed all the same.
    if [ "$st" = 0 ] && [ "$main_pid" = 0 ] && [ "$result" != success ]; then
        st=1
    # One that never started and did not fail: the pod was stopped before the app ran.
    elif [ "$main_pid" = 0 ] && [ "$code" = 0 ]; then
        st=143
    fi
else
    # The pod's systemd no longer answers: it is in its last steps of going down (apps and
    # reapers are ordered before shutdown.target so that this should not happen). The pod
    # was stopped from outside while this app ran, and the stop terminated it (SIGTERM):
    # say so, as for a killed app, rather than leave no status or a false 0.
    st=143
fi
printf '%s' "$st" > "/rkt/status/$app.tmp" && mv -f "/rkt/status/$app.tmp" "/rkt/status/$app"
# in a VM /rkt is the host's over 9p, where written data may wait in the guest's cache: sent now
[ -e /rkt/vm ] && /usr/bin/sync "/rkt/status/$app"
# No answer: claiming ends the pod with that status if it was not going down already
# (rather than leave it waiting for this app for ever), and fails harmlessly if it was.
[ -z "$show" ] && claim 143

if [ "$st" = 203 ]; then  # systemd's EXIT_EXEC: the program could not be executed (as rkt's)
    root="$2" prog="$3" n=0
    while [ -L "$root$prog" ] && [ "$n" -lt 40 ]; do  # links inside the image, not the stage1
        target=$(readlink "$root$prog")
        case "$target" in /*) prog=$target ;; *) prog="${prog%/*}/$target" ;; esac
        n=$((n + 1))
    done
    if [ -s "/rkt/diag/$app" ]; then  # the run entrypoint's finding: a missing interpreter
        msg=$(cat "/rkt/diag/$app")
    elif [ -d "$root$prog" ] || { [ -e "$root$prog" ] && [ ! -x "$root$prog" ]; }; then
        msg="Error: Unable to execute \"$3\": Permission denied"
    elif [ -e "$root$prog" ]; then
        msg="Error: Unable to execute \"$3\": its interpreter or a shared library may be missing from the image"
    else
        msg="Error: Unable to open \"$3\": No such file or directory"
    fi
    echo "$msg" > /dev/console
    echo "$msg"
fi

# Let the app's output reach the console and journal before the pod goes down: iomux ends
# once every writer closed the FIFO (bounded: a stray child may keep it open). With event
# handlers iomux reads writer after writer until /rkt/iomux/<app>.done: mark it, and open the
# FIFO read-write (never blocks) to wake a reader waiting for a next writer.
fifo="/rkt/iomux/$app"
tee_pid=$(/usr/bin/systemctl show --property=MainPID --value "iomux@$app.service")
if [ -n "$tee_pid" ] && [ "$tee_pid" != 0 ] && [ -p "$fifo" ]; then
    : > "$fifo.done"
    i=0
    while [ "$i" -lt 300 ] && kill -0 "$tee_pid" 2>/dev/null; do
        : 3<>"$fifo"
        /usr/bin/sleep 0.01
        i=$((i + 1))
    done
fi

case "$(/usr/bin/systemctl is-system-running 2>/dev/null)" in
    stopping) exit 0 ;;
esac
[ "$st" = 0 ] || claim "$st"
# This app succeeded: end the pod once every app has a status, with the first failure's code
# (another reaper may get here first, with the same answer).
code=0
while read -r other; do
    [ -e "/rkt/status/$other" ] || exit 0
    [ "$code" != 0 ] || code=$(cat "/rkt/status/$other")
done < /rkt/apps
claim "$code"
