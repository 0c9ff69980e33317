# fish completion for diskctl(1). Installed as /usr/share/fish/vendor_completions.d/diskctl.fish.
#
# The commands and options, and for `list` and `find` the labels, UUIDs and host names the
# running diskd knows (from `diskctl list --json`, on the bus given with --bus). When diskd
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
            case --bus
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

# The labels and UUIDs of the disks diskd knows (for list also the hostnames), one a line.
function __diskctl_known
    set -l keys 'label|uuid|partuuid'
    __diskctl_command | string match -q list; and set keys "$keys|hostname"
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

set -l __diskctl_commands list find history peers status refresh announce ping monitor help
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a list -d 'every known disk, or those PATTERN matches'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a find -d 'disks whose uuid, partuuid or label is TERM'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a history -d 'every place and time a matching disk was seen'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a peers -d 'the other hosts heard on the network'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a status -d 'version, host, counts and the last local scan'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a refresh -d 'rescan the local disks now (root)'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a announce -d 'multicast the local disk list now (root)'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a ping -d 'ask every peer to re-announce (root)'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a monitor -d 'print changes as they happen, until interrupted'
complete -c diskctl -n 'not __diskctl_command >/dev/null' -a help -d "the overview, or one command's help"
complete -c diskctl -n '__diskctl_command | string match -q help' -a "$__diskctl_commands[1..-2]"
complete -c diskctl -n '__diskctl_command | string match -qr "^(list|find|history)\$"' -a '(__diskctl_known)' -d 'known to diskd'
complete -c diskctl -n '__diskctl_command | string match -q list' -l all -d 'also the remembered disks not attached now'
