#if canImport(Glibc)
import Glibc
#endif
import AmpSystemd
import SystemSupport

// The systemd user generator: thin; everything is in AmpSystemd.Generator.
exit(Generator.main(arguments: Array(CommandLine.arguments.dropFirst()), environment: processEnvironment()))
