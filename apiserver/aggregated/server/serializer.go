package server

import (
	"io"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// streamListsFrom is the number of items from which a list is encoded item by item.
//
// The generic server streams every list, which spares memory on lists of thousands of
// objects. A namespace's views are a hundred or so, and streamed in many small writes
// they make the response writer grow a buffer of its own for each list (it holds them
// back in case the response turns out long enough to compress): three quarters of the
// server's garbage under list load, and the collector's pauses set the tail of list
// latency. Encoded whole, a short list is one write from encoding/json's pooled buffer.
const streamListsFrom = 500

// listSizedSerializer is whole, except that JSON lists of streamListsFrom items or more
// are encoded by streaming's JSON serializer.
func listSizedSerializer(whole serializer.CodecFactory, streaming runtime.NegotiatedSerializer) runtime.NegotiatedSerializer {
	infos := slices.Clone(whole.SupportedMediaTypes())
	stream, ok := runtime.SerializerInfoForMediaType(streaming.SupportedMediaTypes(), runtime.ContentTypeJSON)
	for i, info := range infos {
		if ok && info.MediaType == runtime.ContentTypeJSON {
			infos[i].Serializer = sizedSerializer{Serializer: info.Serializer, streaming: stream.Serializer}
		}
	}
	return sizedCodecs{CodecFactory: whole, infos: infos}
}

// sizedCodecs answers content negotiation, once per request, from a slice made once.
type sizedCodecs struct {
	serializer.CodecFactory
	infos []runtime.SerializerInfo
}

func (c sizedCodecs) SupportedMediaTypes() []runtime.SerializerInfo { return c.infos }

// sizedSerializer encodes long lists with streaming and everything else whole; it
// decodes as whole does.
type sizedSerializer struct {
	runtime.Serializer
	streaming runtime.Encoder
}

func (s sizedSerializer) Encode(obj runtime.Object, w io.Writer) error {
	if meta.IsListType(obj) && meta.LenList(obj) >= streamListsFrom {
		return s.streaming.Encode(obj, w)
	}
	return s.Serializer.Encode(obj, w)
}
