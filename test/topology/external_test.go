package topology

import "testing"

// TestRecordKeepsMarks: past its limit the record drops its oldest half, and a mark taken
// before the drop still reads exactly what came after it.
func TestRecordKeepsMarks(t *testing.T) {
	e := &External{}
	const limit = 10
	for i := range 9 {
		e.record(Packet{Len: i}, limit)
	}
	mark := e.Mark()
	for i := 9; i < 13; i++ { // the 11th packet drops the oldest five
		e.record(Packet{Len: i}, limit)
	}
	got := e.PacketsSince(mark, nil)
	if len(got) != 4 || got[0].Len != 9 || got[3].Len != 12 {
		t.Errorf("since mark %d: %v; want the packets 9 to 12", mark, got)
	}
	if n := len(e.Packets(nil)); n != 8 {
		t.Errorf("the record holds %d packets, want 8 (5 to 12)", n)
	}
	if e.Mark() != 13 {
		t.Errorf("Mark() = %d, want 13: every packet recorded counts", e.Mark())
	}
}
