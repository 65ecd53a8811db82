# docpilot shell capture for fish >= 3.1 (written by `docpilot init fish`, which prints the line that
# sources it: config.fish runs no Python). Loading it twice is harmless.
# After each command: status and pipestatus (read first), the command line, duration, directory, the
# boot clock (fish has no clock builtin; the daemon turns it into the start time) and the session it
# ran in go to the spool with builtins only. The session is the joined one ($DOCPILOT_SESSION), else
# the one the `current` marker names; nothing is sent unless that session is Active. A command
# starting with a space is not recorded.
set -gx DOCPILOT_SHELL fish # `docpilot run` records the shell it was typed in
set -g __docpilot_spool __DOCPILOT_SPOOL__
set -g __docpilot_active __DOCPILOT_ACTIVE__
# (A counter of an older hook, loaded in this shell before an upgrade, starts a new instance.)
if not set -q __docpilot_instance; or not set -q __docpilot_n[9]; or not set -q __docpilot_first
    set -g __docpilot_instance (random 0 32767)(random 0 32767)(random 0 32767)-$fish_pid
    # The command counter, without `math` (a command substitution per command costs fish about
    # 30 us and a thread's wake-ups): nine decimal digits, most significant first, each kept as
    # its index in __docpilot_digit (1 is 0, 10 is 9), so that counting is a table look-up.
    set -g __docpilot_n 1 1 1 1 1 1 1 1 1
    set -g __docpilot_first 9
    set -g __docpilot_boot
    test -r /proc/sys/kernel/random/boot_id; and read -g __docpilot_boot </proc/sys/kernel/random/boot_id
end
set -g __docpilot_digit 0 1 2 3 4 5 6 7 8 9
set -g __docpilot_succ 2 3 4 5 6 7 8 9 10 1

# What a JSON string cannot hold as it is: a quote, a backslash, a control character.
set -g __docpilot_special '["\\\\\x00-\x1f]'

function __docpilot_json
    string replace -a '\\' '\\\\' -- $argv[1] | string replace -a '"' '\\"' | string replace -a \t '\\t' | string replace -a \r '\\r' | string join '\\n'
end

function __docpilot_preexec --on-event fish_preexec
    set -g __docpilot_pwd $PWD
    set -g __docpilot_armed 1
end

function __docpilot_postexec --on-event fish_postexec
    set -l st $status
    set -l ps $pipestatus
    set -l duration $CMD_DURATION
    set -q __docpilot_armed; or return $st
    set -e __docpilot_armed
    set -l cmd $argv[1]
    # Nothing typed, a leading space, or the shell leaving (bash and zsh never see that line either).
    switch $cmd
        case '' ' *' exit 'exit *'
            return $st
    end
    set -l target
    if set -q DOCPILOT_SESSION; and test -n "$DOCPILOT_SESSION"
        test -e $__docpilot_active/$DOCPILOT_SESSION; or return $st
        set target $DOCPILOT_SESSION
    else
        # `current` always exists once the daemon ran; empty while no session records.
        test -s $__docpilot_active/current; or return $st
        read target <$__docpilot_active/current; or return $st
    end
    set -l up
    set -l idle
    test -n "$__docpilot_boot"; and read up idle </proc/uptime
    # One more command: the last digit goes up, and a 9 carries into the digit before it (which
    # may become the first digit shown: __docpilot_first, the counter without leading zeros).
    for i in 9 8 7 6 5 4 3 2 1
        set -g __docpilot_n[$i] $__docpilot_succ[$__docpilot_n[$i]]
        if test $__docpilot_n[$i] != 1
            test $i -lt $__docpilot_first; and set -g __docpilot_first $i
            break
        end
    end
    # JSON string bodies, escaped only when they need it (a quote, a backslash, a control
    # character): a `string match` costs a few microseconds, the substitution that escapes about 30.
    set -l cwd $__docpilot_pwd
    if string match -qr -- $__docpilot_special $cmd $cwd $target
        string match -qr -- $__docpilot_special $cmd; and set cmd (__docpilot_json $cmd)
        string match -qr -- $__docpilot_special $cwd; and set cwd (__docpilot_json $cwd)
        string match -qr -- $__docpilot_special $target; and set target (__docpilot_json $target)
    end
    # The line as pieces that printf writes one after the other (the pipe statuses and the
    # counter's digits are several pieces: no `string join` substitution needed).
    set -l line '{"op":"record","shell":"fish","session":"'$target'","command":"'$cmd'","cwd":"'$cwd'","exit_code":'$st
    set -q ps[2]; and set -a line ',"pipestatus":['$ps[1] ,$ps[2..-1] ']'
    set -a line ',"duration_ms":'$duration
    test -n "$up"; and set -a line ',"uptime_s":'$up',"boot_id":"'$__docpilot_boot'"'
    set -a line ',"capture_id":"'$__docpilot_instance: $__docpilot_digit[$__docpilot_n[$__docpilot_first..-1]] '"}'\n
    set -l file $__docpilot_spool/$__docpilot_instance.jsonl
    if test -e $file
        printf %s $line >>$file 2>/dev/null
    else
        set -l mask (umask)
        umask 077
        printf %s $line >>$file 2>/dev/null
        umask $mask
    end
    return $st
end

function __docpilot_joined --on-event fish_prompt
    # The joined session has ended: say so once, then follow the current one.
    set -q DOCPILOT_SESSION; and test -n "$DOCPILOT_SESSION"; or return
    test -e $__docpilot_active/$DOCPILOT_SESSION; or test -e $__docpilot_active/$DOCPILOT_SESSION.paused; and return
    echo "docpilot: session $DOCPILOT_SESSION has ended; this shell records into the current session again" >&2
    set -e -g DOCPILOT_SESSION
end

# The client, started fast: the interpreter `docpilot init` ran with, without site and without
# pip's launcher (-I -S), running the package's entry.py, which finds its own package (about half
# of `docpilot note`'s start-up). When either file is gone (the package removed, a virtualenv moved
# or deleted), the `docpilot` on PATH, as `command docpilot` always is.
# The paths are written out (not variables) so that a stopped job shows what runs.
function __docpilot_client
    if test -x __DOCPILOT_PYTHON__; and test -f __DOCPILOT_ENTRY__
        __DOCPILOT_PYTHON__ -I -S __DOCPILOT_ENTRY__ $argv
    else
        command docpilot $argv
    end
end

function docpilot --description 'docpilot; `docpilot join [ID]` / `docpilot leave` change this shell'"'"'s session'
    switch "$argv[1]"
        case join leave
            __docpilot_client $argv --shell fish | source
        case start begin new
            # A joined shell moves to the session it starts.
            __docpilot_client $argv; or return
            set -q DOCPILOT_SESSION; and __docpilot_client join --shell fish | source
        case '*'
            __docpilot_client $argv
    end
end

# Completion of verbs, options and choices: docpilot.fish in the directory `docpilot init` wrote
# beside this file, which fish loads at the first <TAB> after `docpilot`.
set -g __docpilot_completions __DOCPILOT_COMPLETIONS__
if test -n "$__docpilot_completions"; and not contains -- $__docpilot_completions $fish_complete_path
    set -g fish_complete_path $__docpilot_completions $fish_complete_path
end

# Kept current without Python at start-up: when a file this one was made from (the package's hook
# and verb table: an upgrade) or the configuration is newer than this file, DOCPILOT_HOME is not
# what it was, or the package's entry.py is gone (reinstalled elsewhere), `docpilot init` writes
# it again (once) and it is read again; else a few `test`s.
set -g __docpilot_self __DOCPILOT_SELF__
if test -n "$__docpilot_self"; and not set -q __docpilot_refreshed
    set -l home
    set -q DOCPILOT_HOME; and set home $DOCPILOT_HOME
    for f in __DOCPILOT_FROM__
        if test $f -nt $__docpilot_self; or test "$home" != __DOCPILOT_HOME__; or not test -f __DOCPILOT_ENTRY__
            set -g __docpilot_refreshed 1
            command docpilot init fish --file $__docpilot_self >/dev/null 2>&1; and source $__docpilot_self
            break
        end
    end
end
