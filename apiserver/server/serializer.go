package server

import (
	"io"

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

// listSizedSerializer serves JSON with whole from the whole codecs, encoding lists of
// streamListsFrom items or more with the streaming codecs instead. Other media types
// (YAML) are as whole has them.
func listSizedSerializer(whole, streaming serializer.CodecFactory) runtime.NegotiatedSerializer {
	return sizedCodecs{CodecFactory: whole, streaming: streaming}
}

type sizedCodecs struct {
	serializer.CodecFactory
	streaming serializer.CodecFactory
}

func (c sizedCodecs) SupportedMediaTypes() []runtime.SerializerInfo {
	streaming := map[string]runtime.Serializer{}
	for _, info := range c.streaming.SupportedMediaTypes() {
		streaming[info.MediaType] = info.Serializer
	}
	infos := c.CodecFactory.SupportedMediaTypes()
	out := make([]runtime.SerializerInfo, len(infos))
	for i, info := range infos {
		if s, ok := streaming[info.MediaType]; ok && info.MediaType == runtime.ContentTypeJSON {
			info.Serializer = sizedSerializer{Serializer: info.Serializer, streaming: s}
		}
		out[i] = info
	}
	return out
}

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
