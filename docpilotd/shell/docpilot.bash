# docpilot shell capture for bash >= 5.0 (written by `docpilot init bash`, which prints the line that
# sources it: ~/.bashrc runs no Python). Loading it twice is harmless.
# After each command: exit status (first thing read), PIPESTATUS, text (from history), start time,
# duration, directory and the session it ran in go to the spool with builtins only. The session is
# the joined one ($DOCPILOT_SESSION), else the one the `current` marker names when the command
# ends; nothing is sent unless that session is Active. A command starting with a space is not
# recorded (HISTCONTROL). The text comes from history, so the hook turns on `lithist`: a multi-line
# command is kept with its newlines, as typed (`shopt -u lithist` after this line keeps bash's
# default, which joins the lines with "; ").
export DOCPILOT_SHELL=bash  # `docpilot run` records the shell it was typed in
__docpilot_spool=__DOCPILOT_SPOOL__
__docpilot_active=__DOCPILOT_ACTIVE__
if [[ -z ${__docpilot_instance-} ]]; then
  builtin shopt -s lithist
  __docpilot_instance="${EPOCHREALTIME//[!0-9]/}-$$"
  __docpilot_n=0
  __docpilot_t0=
  __docpilot_h=
  __docpilot_lasth=$HISTCMD
  __docpilot_pwd=$PWD
  __docpilot_x=
  __docpilot_fc="$__docpilot_spool/.fc.$$"  # scratch file for the history line (no fork to read it)
  ( builtin umask 077; : > "$__docpilot_fc" ) 2>/dev/null
fi

__docpilot_json() {  # JSON string body of $1 in __docpilot_e (control characters are escaped by the daemon)
  __docpilot_e=$1
  [[ $1 == *[\\\"$'\n\t\r']* ]] || return 0  # most words need nothing: five substitutions saved
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
  __docpilot_e=$s
}

__docpilot_precmd() {
  local __st=$? __ps=("${PIPESTATUS[@]}")
  [[ -z ${DOCPILOT_SESSION-} ]] || __docpilot_joined
  # No file is touched when no command ran (an empty line, Ctrl-C at the prompt) or when it is
  # not in history (a leading space, HISTIGNORE).
  if [[ -n $__docpilot_t0 && $__docpilot_h != "$__docpilot_lasth" ]]; then
    __docpilot_lasth=$__docpilot_h
    # Nor while no session records (`current` is empty then): one stat, no redirection.
    if [[ -n ${DOCPILOT_SESSION-} || -s $__docpilot_active/current ]]; then
      __docpilot_send "$__st" "${__ps[@]}" 2>/dev/null  # never a word at the prompt
    fi
  fi
  __docpilot_t0=
  __docpilot_pwd=$PWD
  return $__st
}

__docpilot_joined() {  # the joined session has ended: say so once, then follow the current one
  [[ -e $__docpilot_active/$DOCPILOT_SESSION || -e $__docpilot_active/$DOCPILOT_SESSION.paused ]] && return
  builtin printf 'docpilot: session %s has ended; this shell records into the current session again\n' "$DOCPILOT_SESSION" >&2
  unset DOCPILOT_SESSION
}

__docpilot_send() {  # the command that just ran, to the spool (started at $__docpilot_t0, in $__docpilot_pwd)
  local st=$1; shift
  local sid=${DOCPILOT_SESSION-}
  if [[ -n $sid ]]; then
    [[ -e $__docpilot_active/$sid ]] || return
  else
    IFS= read -r sid < "$__docpilot_active/current" || return
  fi
  local now=${EPOCHREALTIME//[!0-9]/} t0=$__docpilot_t0 cwd=$__docpilot_pwd cmd file=$__docpilot_spool/$__docpilot_instance.jsonl
  # The history line goes through the scratch file, written over in place and ended by a NUL
  # (truncating a file that holds data costs ext4 about 0.2 ms: the most of this hook's cost), then
  # blanked: the command line (a secret, maybe) does not stay on disk. A UTF-8 character is at
  # most 4 bytes, so the blanks cover it and its NUL.
  { builtin fc -ln -1 && builtin printf '\0'; } 1<> "$__docpilot_fc" || return
  IFS= read -r -d '' cmd < "$__docpilot_fc"
  builtin printf '%*s' $(( ${#cmd} * 4 + 1 )) '' 1<> "$__docpilot_fc"
  cmd=${cmd#$'\t'}; cmd=${cmd# }; cmd=${cmd%$'\n'}
  [[ -n $cmd && $cmd != ' '* ]] || return
  __docpilot_n=$((__docpilot_n + 1))
  __docpilot_json "$sid"
  local line='{"op":"record","shell":"bash","session":"'$__docpilot_e'"'
  __docpilot_json "$cmd"; line+=',"command":"'$__docpilot_e'"'
  __docpilot_json "$cwd"; line+=',"cwd":"'$__docpilot_e'","exit_code":'$st
  (( $# > 1 )) && { local IFS=,; line+=',"pipestatus":['"$*"']'; }
  line+=',"started_us":'$t0',"duration_ms":'$(( (now - t0) / 1000 ))',"capture_id":"'$__docpilot_instance:$__docpilot_n'"}'
  if [[ -e $file ]]; then
    builtin printf '%s\n' "$line" >> "$file"
  else
    local mask; mask=$(builtin umask)   # once per shell: the spool file is created 0600
    builtin umask 077; builtin printf '%s\n' "$line" >> "$file"; builtin umask "$mask"
  fi
}

# Preexec without a DEBUG trap or a fork: PS0 is expanded just before a command line runs, and
# the length of this empty substring is an arithmetic expression that records the start time and
# the history number.
case $PS0 in
  *__docpilot_t0*) ;;
  *) PS0=${PS0-}'${__docpilot_x:0:(__docpilot_t0=${EPOCHREALTIME//[!0-9]/},__docpilot_h=HISTCMD,0)}' ;;
esac
# First in PROMPT_COMMAND, so that $? and PIPESTATUS are the command's; the user's own entries stay.
if [[ $(declare -p PROMPT_COMMAND 2>/dev/null) == "declare -a"* ]]; then
  [[ " ${PROMPT_COMMAND[*]} " == *" __docpilot_precmd "* ]] || PROMPT_COMMAND=(__docpilot_precmd "${PROMPT_COMMAND[@]}")
else
  case ${PROMPT_COMMAND-} in
    *__docpilot_precmd*) ;;
    "") PROMPT_COMMAND=__docpilot_precmd ;;
    *) PROMPT_COMMAND="__docpilot_precmd;${PROMPT_COMMAND}" ;;
  esac
fi

# The client, started fast: the interpreter `docpilot init` ran with, without site and without
# pip's launcher (-I -S), running the package's entry.py, which finds its own package (about half
# of `docpilot note`'s start-up). When either file is gone (the package removed, a virtualenv moved
# or deleted), the `docpilot` on PATH, as `command docpilot` always is.
# The paths are written out (not variables) so that a stopped job shows what runs.
__docpilot_client() {
  if [[ -x __DOCPILOT_PYTHON__ && -f __DOCPILOT_ENTRY__ ]]; then
    __DOCPILOT_PYTHON__ -I -S __DOCPILOT_ENTRY__ "$@"
  else
    command docpilot "$@"
  fi
}

docpilot() {  # `docpilot join [ID]` / `docpilot leave` change this shell's session
  case ${1-} in
    join|leave) eval "$(__docpilot_client "$@" --shell bash)" ;;
    start|begin|new)  # a joined shell moves to the session it starts
      __docpilot_client "$@" || return
      [[ -z ${DOCPILOT_SESSION-} ]] || eval "$(__docpilot_client join --shell bash)" ;;
    *) __docpilot_client "$@" ;;
  esac
}

# Completion of verbs, options and choices (shtab's script, written beside this file by `docpilot
# init`), read at the first <TAB> after `docpilot`, not at start-up.
__docpilot_completion=__DOCPILOT_COMPLETION__
__docpilot_complete() {
  [[ -r $__docpilot_completion ]] && builtin source "$__docpilot_completion" 2>/dev/null || return 0
  declare -F _shtab_docpilot >/dev/null && _shtab_docpilot "$@"
}
[[ -z $__docpilot_completion ]] || declare -F _shtab_docpilot >/dev/null || complete -o bashdefault -F __docpilot_complete docpilot

# Kept current without Python at start-up: when a file this one was made from (the package's hook
# and verb table: an upgrade) or the configuration is newer than this file, DOCPILOT_HOME is not
# what it was, or the package's entry.py is gone (reinstalled elsewhere), `docpilot init` writes
# it again (once) and it is read again; else a few `test`s and no process.
__docpilot_self=__DOCPILOT_SELF__
if [[ -n $__docpilot_self && -z ${__docpilot_refreshed-} ]]; then
  for __docpilot_f in __DOCPILOT_FROM__; do
    if [[ $__docpilot_f -nt $__docpilot_self || ${DOCPILOT_HOME-} != __DOCPILOT_HOME__ || ! -f __DOCPILOT_ENTRY__ ]]; then
      __docpilot_refreshed=1
      command docpilot init bash --file "$__docpilot_self" >/dev/null 2>&1 && builtin source "$__docpilot_self"
      break
    fi
  done
  unset __docpilot_f
fi
