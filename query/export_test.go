package query

// SetTopBatch sets the batch bounds of Top's windowed counting, for tests;
// the returned function restores them.
func SetTopBatch(addrs, hits int) (restore func()) {
	a, h := topBatchAddrs, topBatchHits
	topBatchAddrs, topBatchHits = addrs, hits
	return func() { topBatchAddrs, topBatchHits = a, h }
}
