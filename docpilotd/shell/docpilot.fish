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
if not set -q __docpilot_instance
    set -g __docpilot_instance (random 0 32767)(random 0 32767)(random 0 32767)-$fish_pid
    set -g __docpilot_n 0
    set -g __docpilot_boot
    test -r /proc/sys/kernel/random/boot_id; and read -g __docpilot_boot </proc/sys/kernel/random/boot_id
end

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
    test -n "$cmd"; or return $st
    string match -q -- ' *' $cmd; and return $st
    # The shell is leaving: bash and zsh never see this line either.
    string match -qr -- '^exit( |$)' $cmd; and return $st
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
    set -g __docpilot_n (math $__docpilot_n + 1)
    # JSON string bodies, escaped only when they need it: a command substitution per field costs
    # the prompt about a third of a millisecond, a `string match` a few microseconds.
    set -l cwd $__docpilot_pwd
    string match -qr -- $__docpilot_special $cmd; and set cmd (__docpilot_json $cmd)
    string match -qr -- $__docpilot_special $cwd; and set cwd (__docpilot_json $cwd)
    string match -qr -- $__docpilot_special $target; and set target (__docpilot_json $target)
    set -l line '{"op":"record","shell":"fish","session":"'$target'"'
    set line $line',"command":"'$cmd'","cwd":"'$cwd'","exit_code":'$st
    test (count $ps) -gt 1; and set line $line',"pipestatus":['(string join , $ps)']'
    set line $line',"duration_ms":'$duration
    test -n "$up"; and set line $line',"uptime_s":'$up',"boot_id":"'$__docpilot_boot'"'
    set line $line',"capture_id":"'$__docpilot_instance:$__docpilot_n'"}'
    set -l file $__docpilot_spool/$__docpilot_instance.jsonl
    if test -e $file
        echo $line >>$file 2>/dev/null
    else
        set -l mask (umask)
        umask 077
        echo $line >>$file 2>/dev/null
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

function docpilot --description 'docpilot; `docpilot join [ID]` / `docpilot leave` change this shell'"'"'s session'
    switch "$argv[1]"
        case join leave
            command docpilot $argv --shell fish | source
        case start begin new
            # A joined shell moves to the session it starts.
            command docpilot $argv; or return
            set -q DOCPILOT_SESSION; and command docpilot join --shell fish | source
        case '*'
            command docpilot $argv
    end
end

# Completion of verbs, options and choices: docpilot.fish in the directory `docpilot init` wrote
# beside this file, which fish loads at the first <TAB> after `docpilot`.
set -g __docpilot_completions __DOCPILOT_COMPLETIONS__
if test -n "$__docpilot_completions"; and not contains -- $__docpilot_completions $fish_complete_path
    set -g fish_complete_path $__docpilot_completions $fish_complete_path
end

# Kept current without Python at start-up: when a file this one was made from (the package's hook
# and verb table: an upgrade) or the configuration is newer than this file, or DOCPILOT_HOME is not
# what it was, `docpilot init` writes it again (once) and it is read again; else a few `test`s.
set -g __docpilot_self __DOCPILOT_SELF__
if test -n "$__docpilot_self"; and not set -q __docpilot_refreshed
    set -l home
    set -q DOCPILOT_HOME; and set home $DOCPILOT_HOME
    for f in __DOCPILOT_FROM__
        if test $f -nt $__docpilot_self; or test "$home" != __DOCPILOT_HOME__
            set -g __docpilot_refreshed 1
            command docpilot init fish --file $__docpilot_self >/dev/null 2>&1; and source $__docpilot_self
            break
        end
    end
end
