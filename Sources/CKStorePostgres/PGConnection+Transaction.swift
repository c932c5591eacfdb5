/// Isolation levels for `PGConnection.inTransaction`.
public enum PGIsolationLevel: String, Sendable {
    /// Each statement sees data committed before it began (PostgreSQL's default).
    case readCommitted = "READ COMMITTED"
    /// The transaction sees one snapshot; concurrent updates of the same rows fail with 40001.
    case repeatableRead = "REPEATABLE READ"
    /// As if transactions ran one at a time; conflicts fail with 40001 (retry the transaction).
    case serializable = "SERIALIZABLE"
}

extension PGConnection {
    /// Runs `body` in a transaction: BEGIN, then COMMIT when `body` returns, ROLLBACK when it throws.
    ///
    /// The first error wins: when `body` throws, that error is rethrown after the rollback (an
    /// error of the rollback itself is dropped; a lost connection rolls back on the server). When
    /// `body` caught an SQL error and returned, the transaction is aborted on the server: it is
    /// rolled back and 25P02 is thrown rather than reporting a commit that did not happen. A
    /// failing COMMIT (e.g. 40001 under `.serializable`) is thrown; nothing was committed.
    /// Transactions do not nest: calling this inside a transaction throws.
    @discardableResult
    public func inTransaction<T>(_ isolation: PGIsolationLevel? = nil, _ body: () throws -> T) throws -> T {
        if isInTransaction {
            throw PGError.client("inTransaction called inside a transaction (transactions do not nest)", statement: "BEGIN")
        }
        try execute(isolation.map { "BEGIN ISOLATION LEVEL \($0.rawValue)" } ?? "BEGIN")
        let value: T
        do {
            value = try body()
        } catch {
            rollbackQuietly()
            throw error
        }
        if isInFailedTransaction {
            rollbackQuietly()
            throw PGError(
                origin: .client, sqlState: PGError.SQLState.inFailedSQLTransaction,
                message: "the transaction was aborted by an SQL error that the transaction body caught; rolled back",
                statement: "COMMIT")
        }
        do {
            try execute("COMMIT")
        } catch {
            if isInTransaction { rollbackQuietly() }
            throw error
        }
        return value
    }

    /// ROLLBACK, ignoring its own failure (the error that caused it is the one to report).
    private func rollbackQuietly() {
        guard isConnected else { return }
        _ = try? execute("ROLLBACK")
    }
}
