package server

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/egressgw/egressgw/apiserver/apis/egress"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// writes counts the writes an encoder makes, and keeps what they wrote.
type writes struct {
	n    int
	data []byte
}

func (w *writes) Write(p []byte) (int, error) {
	w.n++
	w.data = append(w.data, p...)
	return len(p), nil
}

func TestShortListsAreOneWriteLongOnesStream(t *testing.T) {
	scheme, codecs, err := newScheme()
	if err != nil {
		t.Fatal(err)
	}
	// As the server does: the generic server's default codecs stream every list.
	streaming := genericapiserver.NewDefaultAPIGroupInfo(egress.GroupName, scheme, runtime.NewParameterCodec(scheme), codecs).NegotiatedSerializer
	sized := listSizedSerializer(codecs, streaming)
	info, ok := runtime.SerializerInfoForMediaType(sized.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		t.Fatal("no JSON serializer")
	}
	if _, ok := runtime.SerializerInfoForMediaType(sized.SupportedMediaTypes(), runtime.ContentTypeYAML); !ok {
		t.Fatal("YAML is no longer served")
	}
	encoder := sized.EncoderForVersion(info.Serializer, v1alpha1.SchemeGroupVersion)
	decoder := sized.DecoderToVersion(info.Serializer, v1alpha1.SchemeGroupVersion)

	tests := []struct {
		name     string
		obj      runtime.Object
		streamed bool
	}{
		{name: "one view", obj: views(1).Items[0].DeepCopyObject()},
		{name: "a namespace's views", obj: views(100)},
		{name: "one short of streaming", obj: views(streamListsFrom - 1)},
		{name: "every namespace's views", obj: views(streamListsFrom), streamed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.obj.DeepCopyObject()
			var w writes
			if err := encoder.Encode(tt.obj, &w); err != nil {
				t.Fatal(err)
			}
			if tt.streamed && w.n < streamListsFrom {
				t.Errorf("%d writes, want one or more per item", w.n)
			}
			if !tt.streamed && w.n != 1 {
				t.Errorf("%d writes, want the object in one", w.n)
			}
			got, _, err := decoder.Decode(w.data, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The encoder sets the kind; the objects read from the store carry none.
			got.GetObjectKind().SetGroupVersionKind(want.GetObjectKind().GroupVersionKind())
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("decoded %#v\nwant %#v", got, want)
			}
		})
	}
}

func views(n int) *v1alpha1.PodEgressList {
	list := &v1alpha1.PodEgressList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}}
	for i := range n {
		list.Items = append(list.Items, v1alpha1.PodEgress{
			ObjectMeta:   metav1.ObjectMeta{Name: fmt.Sprintf("pod-%04d", i), Namespace: "alice", Labels: map[string]string{"role": "frontend"}},
			Pod:          v1alpha1.PodInfo{IP: fmt.Sprintf("198.18.%d.%d", i/250, 2+i%250), NodeName: "node1", NodeIP: "198.51.100.11"},
			OtherTraffic: v1alpha1.OtherTraffic{Verdict: v1alpha1.VerdictMasquerade, NodeName: "node1", NodeIP: "198.51.100.11"},
		})
	}
	return list
}
