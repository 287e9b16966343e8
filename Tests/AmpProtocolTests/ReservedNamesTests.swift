import AmpProtocol
import Testing

@Suite("reserved database names (pure)")
struct ReservedNamesTests {
    @Test("names amp drops on its own are reserved; ordinary ones are not")
    func reserved() {
        for name in ["amp_testdb_mine", "amp_testdb_", "shop__import_123", "a__amp_copy_9"] {
            #expect(Metadb.reservedDatabaseNameProblem(name) != nil, "\(name)")
        }
        for name in ["shop", "amp_test", "shop__import_", "shop__import_x1", "__import_12", "amp-testdb-x"] {
            #expect(Metadb.reservedDatabaseNameProblem(name) == nil, "\(name)")
        }
    }

    @Test("the PID in a temporary database's name")
    func owner() {
        #expect(Metadb.temporaryDatabaseOwner("shop__import_4242") == 4242)
        #expect(Metadb.temporaryDatabaseOwner("a__import_1__amp_copy_77") == 77)
        #expect(Metadb.temporaryDatabaseOwner("shop__import_99999999999") == nil, "not a PID")
        #expect(Metadb.temporaryDatabaseOwner("shop") == nil)
    }
}
