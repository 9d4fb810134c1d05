{
	"id": "",
	"lang": "go"
}
