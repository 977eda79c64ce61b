package nodeagent

import (
	"testing"
	"time"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/nodeagent/flowcopy"
)

func TestCopyState(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   flowcopy.CopyStatus
		want string
	}{
		{"never acknowledged", flowcopy.CopyStatus{}, v1.CopyNoAnswer},
		{"acknowledged, caught up", flowcopy.CopyStatus{InSync: true, AckedAt: now.Add(-200 * time.Millisecond)}, v1.CopyInSync},
		{"acknowledged, changes waiting", flowcopy.CopyStatus{AckedAt: now.Add(-200 * time.Millisecond)}, v1.CopyBehind},
		{"silent for over a second", flowcopy.CopyStatus{InSync: true, AckedAt: now.Add(-1500 * time.Millisecond)}, v1.CopyNoAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := copyState(tt.st, now); got != tt.want {
				t.Errorf("copyState = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestMoved: the report shows a copy's entries at once when they change by more than a
// tenth (of the larger count), and otherwise with its 30 s refresh.
func TestMoved(t *testing.T) {
	tests := []struct {
		was, now int32
		want     bool
	}{
		{0, 0, false}, {0, 1, true}, {100, 109, false}, {100, 112, true}, {100, 89, true}, {20, 0, true}, {1000, 1050, false},
	}
	for _, tt := range tests {
		if got := moved(tt.was, tt.now); got != tt.want {
			t.Errorf("moved(%d, %d) = %v, want %v", tt.was, tt.now, got, tt.want)
		}
	}
}
