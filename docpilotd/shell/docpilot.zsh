# docpilot shell capture for zsh (written by `docpilot init zsh`, which prints the line that sources
# it: ~/.zshrc runs no Python). Loading it twice is harmless.
# After each command: exit status and pipestatus (read first), the command text as typed, start
# time, duration, directory and the session it ran in go to the spool with builtins only. The
# session is the joined one ($DOCPILOT_SESSION), else the one the `current` marker names; nothing
# is sent unless that session is Active. A command starting with a space is not recorded.
zmodload zsh/datetime 2>/dev/null
export DOCPILOT_SHELL=zsh  # `docpilot run` records the shell it was typed in
typeset -g __docpilot_spool=__DOCPILOT_SPOOL__
typeset -g __docpilot_active=__DOCPILOT_ACTIVE__
if [[ -z ${__docpilot_instance-} ]]; then
  typeset -g __docpilot_instance="$(( epochtime[1] * 1000000 + epochtime[2] / 1000 ))-$$"
  typeset -gi __docpilot_n=0
  typeset -g __docpilot_t0= __docpilot_cmd= __docpilot_pwd=
fi

__docpilot_json() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
  REPLY=$s
}

__docpilot_preexec() {
  __docpilot_t0=$(( epochtime[1] * 1000000 + epochtime[2] / 1000 ))
  __docpilot_cmd=${1:-$3}
  __docpilot_pwd=$PWD
}

__docpilot_precmd() {
  local __st=$? __ps=("${pipestatus[@]}")
  [[ -z ${DOCPILOT_SESSION-} ]] || __docpilot_joined
  # No file is touched when no command ran, nor while no session records (`current` is empty
  # then): one stat, no redirection.
  if [[ -n $__docpilot_t0 ]] && [[ -n ${DOCPILOT_SESSION-} || -s $__docpilot_active/current ]]; then
    { __docpilot_send "$__st" "${__ps[@]}" } 2>/dev/null  # never a word at the prompt
  fi
  __docpilot_t0=
  return $__st
}

__docpilot_joined() {  # the joined session has ended: say so once, then follow the current one
  [[ -e $__docpilot_active/$DOCPILOT_SESSION || -e $__docpilot_active/$DOCPILOT_SESSION.paused ]] && return
  builtin print -ru2 -- "docpilot: session $DOCPILOT_SESSION has ended; this shell records into the current session again"
  unset DOCPILOT_SESSION
}

__docpilot_send() {
  local st=$1; shift
  local t0=$__docpilot_t0 cmd=$__docpilot_cmd cwd=$__docpilot_pwd
  __docpilot_t0=
  [[ -n $t0 && -n $cmd && $cmd != ' '* ]] || return
  local sid=${DOCPILOT_SESSION-}
  if [[ -n $sid ]]; then
    [[ -e $__docpilot_active/$sid ]] || return
  else
    IFS= read -r sid < $__docpilot_active/current || return
  fi
  local now=$(( epochtime[1] * 1000000 + epochtime[2] / 1000 )) file=$__docpilot_spool/$__docpilot_instance.jsonl
  (( __docpilot_n++ ))
  __docpilot_json "$sid"
  local line='{"op":"record","shell":"zsh","session":"'$REPLY'"'
  __docpilot_json "$cmd"; line+=',"command":"'$REPLY'"'
  __docpilot_json "$cwd"; line+=',"cwd":"'$REPLY'","exit_code":'$st
  (( $# > 1 )) && line+=',"pipestatus":['${(j:,:)@}']'
  line+=',"started_us":'$t0',"duration_ms":'$(( (now - t0) / 1000 ))',"capture_id":"'$__docpilot_instance:$__docpilot_n'"}'
  if [[ -e $file ]]; then
    builtin print -r -- "$line" >> "$file"
  else
    local mask=$(builtin umask)  # once per shell: the spool file is created 0600
    builtin umask 077; builtin print -r -- "$line" >> "$file"; builtin umask $mask
  fi
}

autoload -Uz add-zsh-hook
add-zsh-hook preexec __docpilot_preexec
# First among the precmd hooks, so that $? and pipestatus are the command's.
precmd_functions=(__docpilot_precmd ${precmd_functions:#__docpilot_precmd})

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
    join|leave) eval "$(__docpilot_client "$@" --shell zsh)" ;;
    start|begin|new)  # a joined shell moves to the session it starts
      __docpilot_client "$@" || return
      [[ -z ${DOCPILOT_SESSION-} ]] || eval "$(__docpilot_client join --shell zsh)" ;;
    *) __docpilot_client "$@" ;;
  esac
}

# Completion of verbs, options and choices: shtab's `_docpilot`, written beside this file by
# `docpilot init`, autoloaded at the first <TAB> (compinit finds it on fpath, or compdef now when
# compinit already ran).
typeset -g __docpilot_completions=__DOCPILOT_COMPLETIONS__
if [[ -n $__docpilot_completions && -r $__docpilot_completions/_docpilot ]]; then
  fpath=($__docpilot_completions ${fpath:#$__docpilot_completions})
  if (( $+functions[compdef] )); then
    autoload -Uz _docpilot
    compdef _docpilot docpilot
  fi
fi

# Kept current without Python at start-up: when a file this one was made from (the package's hook
# and verb table: an upgrade) or the configuration is newer than this file, DOCPILOT_HOME is not
# what it was, or the package's entry.py is gone (reinstalled elsewhere), `docpilot init` writes
# it again (once) and it is read again; else a few `test`s.
typeset -g __docpilot_self=__DOCPILOT_SELF__
if [[ -n $__docpilot_self && -z ${__docpilot_refreshed-} ]]; then
  for __docpilot_f in __DOCPILOT_FROM__; do
    if [[ $__docpilot_f -nt $__docpilot_self || ${DOCPILOT_HOME-} != __DOCPILOT_HOME__ || ! -f __DOCPILOT_ENTRY__ ]]; then
      typeset -g __docpilot_refreshed=1
      command docpilot init zsh --file "$__docpilot_self" >/dev/null 2>&1 && builtin source "$__docpilot_self"
      break
    fi
  done
  unset __docpilot_f
fi
