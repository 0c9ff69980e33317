#!/bin/zsh -f
# packaging/completion-test/zsh-complete.zsh DIR LINE: what zsh offers on TAB after LINE.
#
# Runs an interactive zsh on a pseudo-terminal (zpty) with the completion system
# (compinit) and DIR first in fpath, types LINE and a TAB, and prints every match a
# completion function added (compadd), one a line. Used by the Go tests of the completion
# files; any diskctl it runs is the one in PATH.
emulate -L zsh
zmodload zsh/zpty || exit 2
dir=${1:?usage: $0 DIR LINE} line=${2?usage: $0 DIR LINE}

zpty z zsh -f -i || exit 2
# Send a command and wait until its output says DONE (written so that the echo of the command
# line itself does not match).
run() {
  local out
  zpty -w z "$1; print '<<DO''NE>>'"
  zpty -r z out '*<<DONE>>*' || exit 2
}
run "PROMPT='' RPROMPT='' PS2=''"
# A dump file (ZSH_COMPDUMP) makes later runs start in a fraction of the time.
if [[ -n $ZSH_COMPDUMP ]]; then
  run "fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -d ${(q)ZSH_COMPDUMP}"
else
  run "fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -D"
fi
run "zstyle ':completion:*' list-prompt ''; zstyle ':completion:*' select-prompt ''"
# Every match a completion function adds is printed as <<M:match>>, then added as usual.
run 'compadd() {
  local a
  for a in "$@"; do
    case $a in -O|-A|-D) builtin compadd "$@"; return ;; --|-) break ;; esac
  done
  local -a __m
  builtin compadd -O __m "$@"
  (( $#__m )) && print -r -- ${^__m/#/<<M:}">>"
  builtin compadd "$@"
}'
# TAB completes, then says so: the matches were all printed by then.
run 'tab-then-mark() { zle complete-word; print -rn -- "<<COMPL""ETED>>"; }; zle -N tab-then-mark; bindkey "^I" tab-then-mark'
zpty -w -n z "$line"$'\t'
out=
zpty -r z out '*<<COMPLETED>>*' || exit 2
zpty -d z
print -r -- "$out" | tr -d '\r' | grep -o '<<M:[^>]*>>' | sed -e 's/^<<M://' -e 's/>>$//' | sort -u
