# fish completion for diskctl(1). Installed as /usr/share/fish/vendor_completions.d/diskctl.fish.
#
# The commands and options, the columns of -o and --sort, and for `list`, `find` and `info`
# the labels, partlabels, UUIDs, serials and host names the running diskd knows (from `diskctl list --json`, on the bus given with --bus). When diskd
# does not answer within two seconds, or is not running, there are none, silently. Values
# holding a backslash, a quote or a character that is not printable are left out.

# The command on the line so far: the first word that is neither an option nor --bus's value.
function __diskctl_command
    set -l words (commandline -opc)
    set -e words[1]
    while set -q words[1]
        switch $words[1]
            case --
                set -e words[1]
                break
            case --bus -o --output --sort --host
                set -e words[1..2]
                continue
            case '-*'
            case '*'
                echo $words[1]
                return 0
        end
        set -e words[1]
    end
    return 1
end

# --bus BUS (or --bus=BUS) as given on the line so far, for asking diskd on the same bus.
function __diskctl_bus
    set -l words (commandline -opc)
    for i in (seq (count $words))
        switch $words[$i]
            case '--bus=*'
                echo --bus
                string replace -- --bus= '' $words[$i]
            case --bus
                set -l next (math $i + 1)
                if set -q words[$next]
                    echo --bus
                    echo $words[$next]
                end
        end
    end
end

# The labels, UUIDs, serials and hostnames of the disks diskd knows, one a line.
function __diskctl_known
    set -l keys 'label|partlabel|uuid|partuuid|serial|hostname'
    set -q argv[1]; and set keys $argv[1]
    timeout 2 diskctl (__diskctl_bus) list --json 2>/dev/null </dev/null |
        string match -ar '"(?:'$keys')":"[^"\\\\]*"' |
        string replace -r '^"[a-z]+":"(.*)"$' '$1' |
        string match -rv '\p{C}|^$' | sort -u
end

complete -c diskctl -f
complete -c diskctl -l bus -x -a 'system session unix:path=' -d 'D-Bus where diskd is'
complete -c diskctl -l json -d 'print JSON'
complete -c diskctl -s h -l help -d 'show the help'
complete -c diskctl -s V -l version -d 'print the version'
complete -c diskctl -n '__diskctl_command | string match -q monitor' -l notify -d 'desktop notifications for remote disks'

set -l __diskctl_columns HOST-ID HOST DEVICE UUID PARTUUID LABEL PARTLABEL TYPE FSVER MOUNTED SIZE RO RM ROTA TRAN MODEL VENDOR SERIAL WWN FSSIZE FSAVAIL FSUSED LOCAL LAST-SEEN
set -l __diskctl_disks '__diskctl_command | string match -qr "^(list|find|info)\$"'
complete -c diskctl -n $__diskctl_disks -s o -l output -x -a "$__diskctl_columns" -d 'columns (+COLS adds)'
complete -c diskctl -n $__diskctl_disks -s O -l output-all -d 'every column'
complete -c diskctl -n $__diskctl_disks -s n -l noheadings -d 'no header line'
complete -c diskctl -n $__diskctl_disks -s b -l bytes -d 'sizes in bytes'
complete -c diskctl -n $__diskctl_disks -s r -l raw -d 'raw output'
complete -c diskctl -n $__diskctl_disks -s P -l pairs -d 'KEY="value" pairs'
complete -c diskctl -n $__diskctl_disks -l sort -x -a "$__diskctl_columns" -d 'sort by a column'
complete -c diskctl -n $__diskctl_disks -l host -x -a '(__diskctl_known hostname)' -d 'only the disks of a host'

set -l __diskctl_commands list find info history peers status refresh announce ping monitor help
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a list -d 'every known disk, or those PATTERN matches'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a find -d 'disks where uuid, label, serial, model, device or host is TERM'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a info -d 'every attribute of the disks find TERM selects'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a history -d 'every place and time a matching disk was seen'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a peers -d 'the other hosts heard on the network'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a status -d 'version, host, counts and the last local scan'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a refresh -d 'rescan the local disks now (root)'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a announce -d 'multicast the local disk list now (root)'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a ping -d 'ask every peer to re-announce (root)'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a monitor -d 'print changes as they happen, until interrupted'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a help -d "the overview, or one command's help"
complete -c diskctl -n '__diskctl_command | string match -q help' -a "$__diskctl_commands[1..-2]"
complete -c diskctl -n $__diskctl_disks -a '(__diskctl_known)' -d 'known to diskd'
complete -c diskctl -n '__diskctl_command | string match -q history' -a '(__diskctl_known)' -d 'known to diskd'
complete -c diskctl -n '__diskctl_command | string match -q list' -l all -d 'also the remembered disks not attached now'
