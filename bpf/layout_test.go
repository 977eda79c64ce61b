package bpf

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestLayout checks that the Go mirrors of the map keys and values have the size and
// field offsets of the C structs, as the object's BTF describes them. It needs no root.
func TestLayout(t *testing.T) {
	spec, err := loadEgw()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		m     string
		key   bool
		goVal any
	}{
		{name: "egw_pods key (pod IPv4)", m: egwMapEgwPods, key: true, goVal: ipv4{}},
		{name: "egw_pods value (set id)", m: egwMapEgwPods, goVal: uint32(0)},
		{name: "egw_pod_sources key", m: egwMapEgwPodSources, key: true, goVal: podSourceKey{}},
		{name: "egw_pod_sources value (unused)", m: egwMapEgwPodSources, goVal: uint8(0)},
		{name: "egw_set_routes key (set id)", m: egwMapEgwSetRoutes, key: true, goVal: uint32(0)},
		{name: "egw_egress key (egress id)", m: egwMapEgwEgress, key: true, goVal: uint32(0)},
		{name: "egw_egress value (egress IPv4)", m: egwMapEgwEgress, goVal: ipv4{}},
		{name: "egw_grants key (egress IPv4)", m: egwMapEgwGrants, key: true, goVal: ipv4{}},
		{name: "egw_grants value", m: egwMapEgwGrants, goVal: grantValue{}},
		{name: "egw_uplinks key (egress IPv4)", m: egwMapEgwUplinks, key: true, goVal: ipv4{}},
		{name: "egw_uplinks value", m: egwMapEgwUplinks, goVal: uplinkValue{}},
		{name: "egw_pod_cidrs key (prefix)", m: egwMapEgwPodCidrs, key: true, goVal: dstKey{}},
		{name: "egw_pod_cidrs value", m: egwMapEgwPodCidrs, goVal: uint32(0)},
		{name: "egw_snat_dsts key (egress IP, prefix)", m: egwMapEgwSnatDsts, key: true, goVal: snatDstKey{}},
		{name: "egw_snat_dsts value", m: egwMapEgwSnatDsts, goVal: uint32(0)},
		{name: "egw_stats key (stat id)", m: egwMapEgwStats, key: true, goVal: uint32(0)},
		{name: "egw_stats value", m: egwMapEgwStats, goVal: statValue{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, ok := spec.Maps[tt.m]
			if !ok {
				t.Fatalf("the object has no map %s", tt.m)
			}
			typ := ms.Value
			if tt.key {
				typ = ms.Key
			}
			size, err := btf.Sizeof(typ)
			if err != nil {
				t.Fatal(err)
			}
			gt := reflect.TypeOf(tt.goVal)
			if int(gt.Size()) != size {
				t.Fatalf("Go %s is %d bytes, C %s is %d", gt, gt.Size(), typ, size)
			}
			s, isStruct := btf.UnderlyingType(typ).(*btf.Struct)
			if !isStruct {
				return
			}
			if gt.Kind() != reflect.Struct || gt.NumField() != len(s.Members) {
				t.Fatalf("Go %s does not have the %d fields of C struct %s", gt, len(s.Members), s.Name)
			}
			for i, m := range s.Members {
				f := gt.Field(i)
				msize, err := btf.Sizeof(m.Type)
				if err != nil {
					t.Fatal(err)
				}
				if uint32(f.Offset)*8 != uint32(m.Offset) || int(f.Type.Size()) != msize {
					t.Errorf("Go field %s is %d bytes at byte %d; C %s.%s is %d bytes at byte %d",
						f.Name, f.Type.Size(), f.Offset, s.Name, m.Name, msize, m.Offset/8)
				}
			}
		})
	}
	// A set's trie is declared by sizes (see egw.h), so only its sizes can be checked.
	trie := spec.Maps[egwMapEgwSetRoutes].InnerMap
	if trie == nil || trie.Type != ebpf.LPMTrie {
		t.Fatalf("egw_set_routes' values are %v, want LPM tries", trie)
	}
	if k, v := reflect.TypeFor[dstKey]().Size(), reflect.TypeFor[routeValue]().Size(); trie.KeySize != uint32(k) || trie.ValueSize != uint32(v) {
		t.Errorf("a routes trie has %d-byte keys and %d-byte values; Go's dstKey is %d bytes and routeValue %d", trie.KeySize, trie.ValueSize, k, v)
	}
	if got := spec.Maps[egwMapEgwStats].MaxEntries; got != uint32(len(statNames)) {
		t.Errorf("egw_stats has %d counters (EGW_STAT_MAX), statNames names %d", got, len(statNames))
	}
}

// TestStatNames checks that statNames names enum egw_stat_id of egw.h, densely and in
// its order: a counter reported under another verdict path's name would mislead whoever
// reads the metrics. The enum is not in the object's BTF, so it is read from the header.
func TestStatNames(t *testing.T) {
	src, err := os.ReadFile("egw.h")
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)enum egw_stat_id \{(.*?)\};`).FindSubmatch(src)
	if body == nil {
		t.Fatal("egw.h has no enum egw_stat_id")
	}
	var ids []string
	for _, m := range regexp.MustCompile(`EGW_STAT_(\w+)\s*(=[^,]*)?,`).FindAllSubmatch(body[1], -1) {
		if len(m[2]) > 0 {
			t.Fatalf("EGW_STAT_%s has an explicit value %q: statNames and Stats count the ids from 0 without gaps", m[1], m[2])
		}
		ids = append(ids, strings.ToLower(string(m[1])))
	}
	if len(ids) == 0 || ids[len(ids)-1] != "max" {
		t.Fatalf("enum egw_stat_id does not end with EGW_STAT_MAX: %v", ids)
	}
	if want := ids[:len(ids)-1]; !slices.Equal(statNames, want) {
		t.Errorf("statNames is\n%v\nenum egw_stat_id names\n%v", statNames, want)
	}
}
