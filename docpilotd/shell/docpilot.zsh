# docpilot shell capture for zsh (printed by `docpilot init zsh`). Loading it twice is harmless.
# After each command: exit status and pipestatus (read first), the command text as typed, start
# time, duration and directory go to the spool with builtins only. Nothing is sent unless the
# session captures (an Active session); a command starting with a space is not recorded.
zmodload zsh/datetime 2>/dev/null
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
  { __docpilot_send "$__st" "${__ps[@]}" } 2>/dev/null  # never a word at the prompt
  return $__st
}

__docpilot_send() {
  local st=$1; shift
  local t0=$__docpilot_t0 cmd=$__docpilot_cmd cwd=$__docpilot_pwd
  __docpilot_t0=
  [[ -n $t0 && -n $cmd && $cmd != ' '* ]] || return
  [[ -e $__docpilot_active/${DOCPILOT_SESSION:-current} ]] || return
  local now=$(( epochtime[1] * 1000000 + epochtime[2] / 1000 )) file=$__docpilot_spool/$__docpilot_instance.jsonl
  (( __docpilot_n++ ))
  local line='{"op":"record","shell":"zsh"'
  [[ -n ${DOCPILOT_SESSION-} ]] && { __docpilot_json "$DOCPILOT_SESSION"; line+=',"session":"'$REPLY'"'; }
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

docpilot() {  # `docpilot join [ID]` / `docpilot leave` change this shell's session
  case ${1-} in
    join|leave) eval "$(command docpilot "$@" --shell zsh)" ;;
    *) command docpilot "$@" ;;
  esac
}
