# fish completion for diskd(8). Installed as /usr/share/fish/vendor_completions.d/diskd.fish.
# The options (the same list as `diskd --help`) and their values where there is a list to
# choose from.
complete -c diskd -f
complete -c diskd -s h -l help -d 'print the options with their defaults and exit'
complete -c diskd -s V -l version -d 'print the version and exit'
complete -c diskd -s d -l daemon -d 'run the network daemon (without it: the interactive client)'
complete -c diskd -l socket -r -F -d 'control socket'
complete -c diskd -l group -x -a '239.255.77.77:4277 [ff15::d15c]:4277' -d 'multicast group and UDP port, once per address family'
complete -c diskd -l interface -x -a '(__fish_print_interfaces)' -d 'interface to use (repeatable)'
complete -c diskd -l ttl -x -d 'multicast TTL (hops + 1 to cross routers)'
complete -c diskd -l announce-interval -x -d 'full announcement period (duration)'
complete -c diskd -l scan-interval -x -d 'safety rescan period (duration)'
complete -c diskd -l peer-timeout -x -d 'peer lost after this long unheard (duration)'
complete -c diskd -l blkid -x -a '(__fish_complete_command)' -d 'program run to probe devices'
complete -c diskd -l blkid-timeout -x -d 'a probe running longer is killed (duration)'
complete -c diskd -l device -x -a '(__fish_complete_path /dev/)' -d 'probe only devices matching this glob'
complete -c diskd -l host-id -x -d 'stable identity of this host'
complete -c diskd -l hostname -x -d 'name shown to people'
complete -c diskd -l bus -x -a 'system session none unix:path=' -d 'D-Bus to export org.diskd on'
complete -c diskd -l key-file -r -F -d 'keyring: seal every datagram, accept only sealed ones'
complete -c diskd -l no-uevents -d 'do not listen to kernel uevents and mount changes; poll only'
complete -c diskd -l state-dir -r -F -d 'directory of the store (history, replay marks), or none'
complete -c diskd -l history-max -r -d 'remember at most this many disks (and peers)'
complete -c diskd -l history-max-age -r -d 'forget disks not seen for this long'
complete -c diskd -l return-after -r -d 'a disk back after being gone this long is reported as returned'
complete -c diskd -l max-clock-skew -x -d 'with --key-file: drop sealed messages sent further than this from our clock (duration)'
complete -c diskd -l log-level -x -a 'debug info warning error' -d 'log records of this level and above'

# Without -d, one command may follow: diskd list, diskd find X.
complete -c diskd -n 'not __fish_seen_argument -s d -l daemon; and __fish_is_first_arg' -a 'help list find info peers status refresh announce ping' -d 'run one command and exit'
