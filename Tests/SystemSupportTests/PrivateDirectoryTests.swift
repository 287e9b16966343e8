#if canImport(Glibc)
import Glibc
#endif
import SystemSupport
import Testing

@Suite("private directories and exclusive temporary files (real files)")
struct PrivateDirectoryTests {
    func scratch() -> String {
        var template = Array("/tmp/amp-private.XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    @Test("0700 of one's own passes; group or other bits, a link or a file are named")
    func privateDirectory() throws {
        let dir = scratch()
        defer { try? removeTree(dir) }
        #expect(privateDirectoryProblem(dir) == nil)
        chmod(dir, 0o777)
        #expect(privateDirectoryProblem(dir)?.contains("mode 0777, not 0700") == true)
        #expect(privateDirectoryProblem(dir, readableByOthers: true) != nil, "writable by others")
        chmod(dir, 0o755)
        #expect(privateDirectoryProblem(dir) != nil && privateDirectoryProblem(dir, readableByOthers: true) == nil, "systemd's 0755 below a 0700 runtime directory")
        chmod(dir, 0o700)
        #expect(symlink(dir, dir + "/link") == 0)
        #expect(privateDirectoryProblem(dir + "/link")?.contains("symbolic link") == true)
        #expect(privateDirectoryProblem(dir, owner: geteuid() &+ 1)?.contains("belongs to UID") == true)
    }

    @Test("a temporary file never follows a link planted under any name, and is 0600")
    func exclusiveTemporary() throws {
        let dir = scratch()
        defer { try? removeTree(dir) }
        let (fd, path) = try createTemporaryFile(beside: dir + "/a.dump", mode: 0o600)
        close(fd)
        var st = stat()
        #expect(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_mode & 0o777 == 0o600)
        #expect(path.hasPrefix(dir + "/.a.dump.tmp-") && path.count == (dir + "/.a.dump.tmp-").count + 16)
        let (fd2, other) = try createTemporaryFile(beside: dir + "/a.dump", mode: 0o600)
        close(fd2)
        #expect(other != path, "random names")
    }
}
