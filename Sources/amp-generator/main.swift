#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpRegistry
import SystemSupport

// The systemd user generator: thin; everything is in AmpRegistry.Generator.
exit(Generator.main(arguments: Array(CommandLine.arguments.dropFirst()), environment: processEnvironment()))
