# docpilot shell capture for fish >= 3.1 (printed by `docpilot init fish`). Loading it twice is harmless.
# After each command: status and pipestatus (read first), the command line, duration and directory go
# to the spool with builtins only. Nothing is sent unless the session captures (an Active session);
# a command starting with a space is not recorded.
set -g __docpilot_spool __DOCPILOT_SPOOL__
set -g __docpilot_active __DOCPILOT_ACTIVE__
if not set -q __docpilot_instance
    set -g __docpilot_instance (random 0 32767)(random 0 32767)(random 0 32767)-$fish_pid
    set -g __docpilot_n 0
end

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
    set -l target current
    set -q DOCPILOT_SESSION; and test -n "$DOCPILOT_SESSION"; and set target $DOCPILOT_SESSION
    test -e $__docpilot_active/$target; or return $st
    set -g __docpilot_n (math $__docpilot_n + 1)
    set -l line '{"op":"record","shell":"fish"'
    test "$target" != current; and set line $line',"session":"'(__docpilot_json $target)'"'
    set line $line',"command":"'(__docpilot_json $cmd)'","cwd":"'(__docpilot_json $__docpilot_pwd)'","exit_code":'$st
    test (count $ps) -gt 1; and set line $line',"pipestatus":['(string join , $ps)']'
    set line $line',"duration_ms":'$duration',"capture_id":"'$__docpilot_instance:$__docpilot_n'"}'
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

function docpilot --description 'docpilot; `docpilot join [ID]` / `docpilot leave` change this shell'"'"'s session'
    switch "$argv[1]"
        case join leave
            command docpilot $argv --shell fish | source
        case '*'
            command docpilot $argv
    end
end
