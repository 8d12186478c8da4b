#include "serving/protocols.h"

#include <gtest/gtest.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>

#include "core/json.h"
#include "serving/json_reader.h"

namespace takt::serving {
namespace {

const std::vector<std::string> kFeatures = {"a", "b", "c"};

// The error message of a failed result (and that it failed with `code`).
template <typename T>
std::string ErrorOf(const Result<T>& r, Code code = Code::kInvalidArgument) {
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), code) << r.error().message();
  return r.error().message();
}

#define EXPECT_ERROR_HAS(result, text) \
  EXPECT_NE(ErrorOf(result).find(text), std::string::npos) << ErrorOf(result)

// --- JsonReader -------------------------------------------------------------

TEST(JsonReaderTest, StringsWithEscapesAndSurrogatePairs) {
  JsonReader r(R"("a\"b\\c\/\n\u00e9\ud83d\ude00x")");
  auto s = r.ReadString();
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(*s, "a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80x");
  EXPECT_TRUE(r.Finish().has_value());
}

TEST(JsonReaderTest, RejectsBadStrings) {
  for (std::string_view bad : {R"("\ud83d")", R"("\ude00")", R"("\x")", R"("\u12G4")", "\"a\x01\"",
                               "\"\xc3\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"abc"}) {
    JsonReader r(bad);
    auto s = r.ReadString();
    ASSERT_FALSE(s.has_value()) << bad;
    EXPECT_NE(s.error().message().find("invalid JSON at line 1, column "), std::string::npos);
  }
}

TEST(JsonReaderTest, NumbersFollowTheGrammar) {
  for (std::string_view good : {"0", "-0", "1.5", "-12e+3", "1E-7", "123456789012345678901234567890"}) {
    JsonReader r(good);
    auto n = r.ReadNumberText();
    ASSERT_TRUE(n.has_value()) << good;
    EXPECT_EQ(*n, good);
    EXPECT_TRUE(r.Finish().has_value());
  }
  for (std::string_view bad : {"01", "1.", ".5", "-", "1e", "+1", "-x"}) {
    JsonReader r(bad);
    auto n = r.ReadNumberText();
    EXPECT_FALSE(n.has_value() && r.Finish().has_value()) << bad;
  }
}

TEST(JsonReaderTest, DepthLimitAndTrailingGarbage) {
  std::string deep(65, '[');
  const std::string text = deep + std::string(65, ']');
  JsonReader r(text);
  EXPECT_NE(r.Skip().error().message().find("nesting deeper than 64 levels"), std::string::npos);
  const std::string ok_text = std::string(64, '[') + std::string(64, ']');
  JsonReader ok(ok_text);
  EXPECT_TRUE(ok.Skip().has_value());
  JsonReader trailing("{} x");
  ASSERT_TRUE(trailing.Skip().has_value());
  EXPECT_NE(trailing.Finish().error().message().find("line 1, column 4: trailing characters"),
            std::string::npos);
}

TEST(JsonReaderTest, WritersEscapeAndRoundTrip) {
  std::string s;
  AppendJsonString(s, "q\"\\\n\x01");
  EXPECT_EQ(s, R"("q\"\\\n\u0001")");
  s.clear();
  AppendJsonFloat(s, 0.1f);
  s += ',';
  AppendJsonFloat(s, std::nanf(""));
  EXPECT_EQ(s, "0.1,null");
  float v = 0;
  EXPECT_EQ(ParseFloat("1e-50", &v), FloatParse::kOk);
  EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(ParseFloat("1e39", &v), FloatParse::kNotFinite);
  EXPECT_EQ(ParseFloat("inf", &v), FloatParse::kNotFinite);
  EXPECT_EQ(ParseFloat("1x", &v), FloatParse::kNotANumber);
}

TEST(JsonReaderTest, ShortDecimalsRoundAsFromChars) {
  // ParseFloat's fast path for short decimals against std::from_chars.
  uint64_t state = 42;
  for (int i = 0; i < 200000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t m = static_cast<uint32_t>(state >> 33) % 10000000;
    const int frac = static_cast<int>((state >> 20) % 8);
    std::string text = std::to_string(m);
    if (frac > 0) {
      text.insert(0, std::string(8, '0'));
      text.insert(text.size() - static_cast<size_t>(frac), ".");
      text.erase(0, std::min(text.find_first_not_of('0'), text.find('.') - 1));
    }
    if (state & 1) text.insert(0, "-");
    float fast = 0, slow = 0;
    ASSERT_EQ(ParseFloat(text, &fast), FloatParse::kOk) << text;
    std::from_chars(text.data(), text.data() + text.size(), slow);
    ASSERT_EQ(std::bit_cast<uint32_t>(fast), std::bit_cast<uint32_t>(slow)) << text;
  }
}

// --- Open Inference Protocol ------------------------------------------------

TEST(OipTest, OneTensorNestedOrFlat) {
  auto r = ParseOipInfer(
      R"({"id":"r1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]})",
      kFeatures);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->id, "r1");
  EXPECT_EQ(r->rows.rows, 2u);
  EXPECT_EQ(r->rows.cols, 3u);
  EXPECT_EQ(r->rows.values, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  r = ParseOipInfer(R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP64","data":[1,2,null]}]})",
                    kFeatures);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->rows.rows, 1u);
  EXPECT_TRUE(std::isnan(r->rows.values[2]));
  EXPECT_FALSE(r->binary_output);
}

TEST(OipTest, DataBeforeShapeAndDatatype) {
  auto r = ParseOipInfer(R"({"inputs":[{"data":[1,2,3,4,5,6],"name":"x","shape":[2,3],"datatype":"INT16"}],
                             "id":"late"})",
                         kFeatures);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->rows.values[5], 6.0f);
  EXPECT_EQ(r->id, "late");
}

TEST(OipTest, OneInputPerFeatureInAnyOrder) {
  auto r = ParseOipInfer(R"({"inputs":[
      {"name":"c","shape":[2],"datatype":"FP32","data":[3,6]},
      {"name":"a","shape":[2],"datatype":"INT64","data":[1,4]},
      {"name":"b","shape":[2,1],"datatype":"BOOL","data":[true,false]}]})",
                         kFeatures);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->rows.values, (std::vector<float>{1, 1, 3, 4, 0, 6}));
}

TEST(OipTest, DatatypesAndRanges) {
  auto one = [](std::string_view dtype, std::string_view data) {
    return ParseOipInfer(R"({"inputs":[{"name":"x","shape":[1,3],"datatype":")" + std::string(dtype) +
                             R"(","data":)" + std::string(data) + "}]}",
                         kFeatures);
  };
  EXPECT_TRUE(one("UINT8", "[0,255,1]").has_value());
  EXPECT_TRUE(one("INT8", "[-128,127,0]").has_value());
  EXPECT_TRUE(one("UINT64", "[18446744073709551615,0,1]").has_value());
  EXPECT_TRUE(one("FP16", "[65504,-1.5,0]").has_value());
  EXPECT_ERROR_HAS(one("UINT8", "[0,256,1]"),
                   "inputs[0].data: value 256 at row 0, column 1 is out of range for UINT8");
  EXPECT_ERROR_HAS(one("UINT32", "[-1,2,1]"), "value -1 at row 0, column 0 is out of range for UINT32");
  EXPECT_ERROR_HAS(one("INT8", "[0,1,-129]"), "out of range for INT8");
  EXPECT_ERROR_HAS(one("INT64", "[0,1,9223372036854775808]"), "out of range for INT64");
  EXPECT_ERROR_HAS(one("UINT64", "[0,1,18446744073709551616]"), "out of range for UINT64");
  EXPECT_ERROR_HAS(one("INT32", "[0,1.5,2]"),
                   "value 1.5 at row 0, column 1 is not an integer (datatype INT32)");
  EXPECT_ERROR_HAS(one("FP16", "[0,70000,2]"), "out of range for FP16");
  EXPECT_ERROR_HAS(one("BOOL", "[true,1,false]"),
                   "expected true or false (datatype BOOL) at row 0, column 1");
  EXPECT_ERROR_HAS(one("FP32", R"([1,"b",3])"),
                   "expected a number (datatype FP32) at row 0, column 1, found a string");
  EXPECT_ERROR_HAS(one("BYTES", R"(["a","b","c"])"), "datatype BYTES (strings) is not supported");
  EXPECT_ERROR_HAS(one("STRING", "[1,2,3]"), "datatype 'STRING' is not one of");
  EXPECT_ERROR_HAS(one("FP32", "[1,1e39,3]"), "inputs[0].data: value 1e39 at row 0, column 1 is not finite");
  EXPECT_ERROR_HAS(one("FP64", "[1,NaN,3]"),
                   "invalid JSON at line 1, column 66: expected a value, found 'N'");
  EXPECT_ERROR_HAS(one("FP64", "[1,-Infinity,3]"),
                   "invalid JSON at line 1, column 67: expected a digit, found 'I'");
}

TEST(OipTest, ShapesMustMatchData) {
  auto one = [](std::string_view shape, std::string_view data) {
    return ParseOipInfer(R"({"inputs":[{"name":"x","shape":)" + std::string(shape) +
                             R"(,"datatype":"FP32","data":)" + std::string(data) + "}]}",
                         kFeatures);
  };
  EXPECT_ERROR_HAS(one("[2,3]", "[1,2,3,4,5]"), "inputs[0].data: expected 6 values for shape [2, 3], got 5");
  EXPECT_ERROR_HAS(one("[2,3]", "[1,2,3,4,5,6,7]"), "expected 6 values for shape [2, 3], got 7");
  EXPECT_ERROR_HAS(one("[2,3]", "[[1,2,3],[4,5]]"),
                   "inputs[0].data[1]: expected 3 values for shape [2, 3], got 2");
  EXPECT_ERROR_HAS(one("[2,3]", "[[1,2,3]]"), "inputs[0].data: expected 2 rows for shape [2, 3], got 1");
  EXPECT_ERROR_HAS(one("[1,3]", "[[[1,2,3]]]"), "nested deeper than shape [1, 3]");
  EXPECT_ERROR_HAS(one("[3]", "[[1,2,3]]"), "nested arrays do not match shape [3]");
  EXPECT_ERROR_HAS(one("[1,3]", "[[1,2,3],4]"), "mixes arrays and values");
  EXPECT_ERROR_HAS(one("[1,2]", "[1,2]"),
                   "inputs[0] ('x'): shape [1, 2] has 2 features; the model expects 3");
  EXPECT_ERROR_HAS(one("[1,3,1]", "[1,2,3]"), "inputs[0].shape: expected 1 or 2 dimensions");
  EXPECT_ERROR_HAS(one("[-1,3]", "[1,2,3]"), "dimension -1 is not a non-negative integer");
  EXPECT_ERROR_HAS(one("[0,3]", "[]"), "holds no rows");
  EXPECT_ERROR_HAS(one("[1,3]", R"({"a":1})"), "inputs[0].data: expected an array, found an object");
}

TEST(OipTest, FeatureInputsNameWhatIsMissingOrUnknown) {
  auto r = ParseOipInfer(R"({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]},
                                      {"name":"zz","shape":[1],"datatype":"FP32","data":[1]},
                                      {"name":"yy","shape":[1],"datatype":"FP32","data":[1]}]})",
                         kFeatures);
  EXPECT_ERROR_HAS(r, "inputs 'zz', 'yy' are not features of this model");
  r = ParseOipInfer(R"({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}, 
                                 {"name":"b","shape":[1],"datatype":"FP32","data":[1]}]})",
                    kFeatures);
  EXPECT_ERROR_HAS(r, "missing input for feature 'c'");
  r = ParseOipInfer(R"({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]},
                                 {"name":"b","shape":[2],"datatype":"FP32","data":[1,2]},
                                 {"name":"c","shape":[1],"datatype":"FP32","data":[1]}]})",
                    kFeatures);
  EXPECT_ERROR_HAS(r, "inputs[1] ('b'): shape [2] has 2 rows, inputs[0] ('a') has 1");
  r = ParseOipInfer(R"({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]},
                                 {"name":"a","shape":[1],"datatype":"FP32","data":[1]}]})",
                    kFeatures);
  EXPECT_ERROR_HAS(r, "input 'a' is given twice");
}

TEST(OipTest, BadDocuments) {
  struct Case {
    std::string body;
    const char* expect;
  } cases[] = {
      {R"({"inputs":[]})", "'inputs' must be a non-empty array"},
      {R"({"inputs": [)", "invalid JSON at line 1, column 13: expected a value, found end of input"},
      {R"([1,2,3])", "expected a JSON object with 'inputs'"},
      {"", "empty body"},
      {R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}]} {})", "trailing characters"},
      {R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}],"inputs":[]})",
       "duplicate key 'inputs'"},
      {R"({"inputs":[{"name":"x","shape":[3],"shape":[3],"datatype":"FP32","data":[1,2,3]}]})",
       "inputs[0]: duplicate key 'shape'"},
      {R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32"}]})", "inputs[0] ('x'): missing 'data'"},
      {R"({"inputs":[{"shape":[3],"datatype":"FP32","data":[1,2,3]}]})", "inputs[0]: missing 'name'"},
      {R"({"id":5,"inputs":[]})", "'id' must be a string"},
      {"{\"inputs\":[{\"name\":\"x\xff\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,2,3]}]}",
       "invalid JSON at line 1, column 22: invalid UTF-8 inside a string"},
      {R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3],"p":)" + std::string(70, '[') +
           std::string(70, ']') + "}]}",
       "nesting deeper than 64 levels"},
  };
  for (const auto& c : cases) {
    auto r = ParseOipInfer(c.body, kFeatures);
    EXPECT_ERROR_HAS(r, c.expect);
  }
}

TEST(OipTest, RowLimit) {
  ParseOptions options;
  options.max_rows = 2;
  auto r =
      ParseOipInfer(R"({"inputs":[{"name":"x","shape":[3,3],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9]}]})",
                    kFeatures, options);
  EXPECT_NE(ErrorOf(r, Code::kPayloadTooLarge).find("more than 2 rows"), std::string::npos);
}

TEST(OipTest, OutputsAskForBinary) {
  auto r = ParseOipInfer(R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}],
                             "outputs":[{"name":"predict","parameters":{"binary_data":true}}]})",
                         kFeatures);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_TRUE(r->binary_output);
  EXPECT_EQ(r->requested_outputs, std::vector<std::string>{"predict"});
  r = ParseOipInfer(R"({"parameters":{"binary_data_output":true,"other":[1]},
                        "inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}]})",
                    kFeatures);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->binary_output);
}

std::string Le32(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  std::string s;
  for (int i = 0; i < 4; ++i) s += static_cast<char>((bits >> (8 * i)) & 0xFF);
  return s;
}

TEST(OipTest, BinaryTensors) {
  std::string header =
      R"({"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},)"
      R"({"name":"b","shape":[2],"datatype":"UINT8","parameters":{"binary_data_size":2}},)"
      R"({"name":"c","shape":[2],"datatype":"FP32","data":[5,6]}]})";
  std::string body = header + Le32(1.5f) + Le32(-2) + std::string("\x07\x00", 2);
  ParseOptions options;
  options.json_header_length = header.size();
  auto r = ParseOipInfer(body, kFeatures, options);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->rows.values, (std::vector<float>{1.5f, 7, 5, -2, 0, 6}));

  EXPECT_ERROR_HAS(ParseOipInfer(body.substr(0, body.size() - 1), kFeatures, options),
                   "binary tensor data: inputs[1] needs 2 bytes at offset 8, but the binary part of the body "
                   "holds only 9 bytes");
  EXPECT_ERROR_HAS(ParseOipInfer(body + "xx", kFeatures, options),
                   "the body holds 12 bytes after the JSON header, the inputs declare 10");
  EXPECT_ERROR_HAS(ParseOipInfer(header, kFeatures), "needs the Inference-Header-Content-Length header");
  options.json_header_length = body.size() + 1;
  EXPECT_ERROR_HAS(ParseOipInfer(body, kFeatures, options), "is larger than the body");

  std::string wrong =
      R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  options.json_header_length = wrong.size();
  EXPECT_ERROR_HAS(ParseOipInfer(wrong + std::string(8, '\0'), kFeatures, options),
                   "binary_data_size 8 does not match shape [1, 3] of FP32 (12 bytes)");
  std::string half =
      R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP16","parameters":{"binary_data_size":6}}]})";
  options.json_header_length = half.size();
  auto h = ParseOipInfer(half + std::string("\x00\x3c\x00\xc0\x01\x00", 6), kFeatures, options);
  ASSERT_TRUE(h.has_value()) << h.error().ToString();
  EXPECT_EQ(h->rows.values, (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24)}));
  std::string inf =
      R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}}]})";
  options.json_header_length = inf.size();
  EXPECT_ERROR_HAS(ParseOipInfer(inf + Le32(1) + Le32(INFINITY) + Le32(2), kFeatures, options),
                   "binary value at element 1 is not finite");
}

TEST(OipTest, RenderJsonAndBinaryReplies) {
  InferenceInput request;
  request.id = "r\"1";
  std::vector<float> preds = {0.25f, 0.1f};
  OipReply reply = RenderOipReply("weld-pm", 3, request, preds);
  EXPECT_FALSE(reply.json_header_length.has_value());
  EXPECT_EQ(reply.body,
            R"({"model_name":"weld-pm","model_version":"3","id":"r\"1","outputs":[{"name":"predict",)"
            R"("datatype":"FP32","shape":[2],"data":[0.25,0.1]}]})");
  std::vector<float> multi = {0.1f, 0.9f, 0.4f, 0.6f};
  reply = RenderOipReply("m", 1, {}, PredictionsView(multi, 2, 2));
  EXPECT_NE(reply.body.find(R"("shape":[2,2],"data":[0.1,0.9,0.4,0.6])"), std::string::npos) << reply.body;

  request.binary_output = true;
  reply = RenderOipReply("m", 1, request, preds);
  ASSERT_TRUE(reply.json_header_length.has_value());
  EXPECT_EQ(reply.content_type, "application/octet-stream");
  std::string header = reply.body.substr(0, *reply.json_header_length);
  EXPECT_NE(header.find(R"("parameters":{"binary_data_size":8})"), std::string::npos) << header;
  EXPECT_TRUE(ParseJson(header, "header").has_value());
  EXPECT_EQ(reply.body.substr(*reply.json_header_length), Le32(0.25f) + Le32(0.1f));

  auto meta = ParseJson(RenderOipMetadata("m\n", 2, kFeatures), "metadata");
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ((*meta)["parameters"]["feature_names"][2], "c");
  EXPECT_EQ((*meta)["inputs"][0]["shape"][1], 3);
  EXPECT_EQ(RenderOipInfer("m", 1, "", preds).find("\"id\""), std::string::npos);
}

// --- SageMaker CSV ------------------------------------------------------------

TEST(CsvRowsTest, ParsesRows) {
  auto m = ParseCsvRows("1,2,3\r\n4, 5 ,6\n\n\"7\",\" 8\",9", 3);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->rows, 3u);
  EXPECT_EQ(m->cols, 3u);
  EXPECT_EQ(m->values, (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  auto missing = ParseCsvRows("1,,3\n", 3);
  ASSERT_TRUE(missing.has_value());
  EXPECT_TRUE(std::isnan(missing->values[1]));
  auto one = ParseCsvRows("-1.5e3", 1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->values[0], -1500.0f);
}

TEST(CsvRowsTest, RejectsBadRows) {
  EXPECT_ERROR_HAS(ParseCsvRows("1,2\n", 3), "csv line 1: 2 values; the model expects 3 features");
  EXPECT_ERROR_HAS(ParseCsvRows("1,2,3\n1,2,3,4\n", 3), "csv line 2: 4 values; the model expects 3");
  EXPECT_ERROR_HAS(ParseCsvRows("1,2,3\n1,x,3\n", 3), "csv line 2, value 2: 'x' is not a number");
  EXPECT_ERROR_HAS(ParseCsvRows("1,inf,3\n", 3), "csv line 1, value 2: 'inf' is not a finite number");
  EXPECT_ERROR_HAS(ParseCsvRows("nan,1,3\n", 3), "csv line 1, value 1: 'nan' is not a finite number");
  EXPECT_ERROR_HAS(ParseCsvRows("1,1e39,3\n", 3), "'1e39' is not a finite number");
  EXPECT_ERROR_HAS(ParseCsvRows("1,\"2,3\n", 3), "csv line 1: unterminated quoted field");
  EXPECT_ERROR_HAS(ParseCsvRows("1,\"2\"x,3\n", 3),
                   "csv line 1, value 2: unexpected text after a quoted field");
  EXPECT_ERROR_HAS(ParseCsvRows("", 3), "the body is empty");
  EXPECT_ERROR_HAS(ParseCsvRows("\n\r\n", 3), "holds no rows");
  ParseOptions options;
  options.max_rows = 2;
  EXPECT_NE(ErrorOf(ParseCsvRows("1\n2\n3\n", 1, options), Code::kPayloadTooLarge).find("more than 2 rows"),
            std::string::npos);
}

TEST(CsvRowsTest, RendersRows) {
  EXPECT_EQ(RenderCsvPredictions(std::vector<float>{0.5f, 1e30f}), "0.5\n1e+30\n");
  std::vector<float> multi = {0.1f, 0.9f, 0.4f, NAN};
  EXPECT_EQ(RenderCsvPredictions(PredictionsView(multi, 2, 2)), "0.1,0.9\n0.4,\n");
}

// --- SageMaker and MLflow JSON ----------------------------------------------

std::vector<float> Rows(std::string_view body) {
  auto m = ParseJsonInstances(body, kFeatures);
  EXPECT_TRUE(m.has_value()) << body << ": " << (m ? "" : m.error().message());
  if (!m) return {};
  EXPECT_EQ(m->cols, 3u);
  EXPECT_EQ(m->values.size(), m->rows * 3);
  return m->values;
}

TEST(JsonInstancesTest, AllForms) {
  const std::vector<float> two = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(Rows(R"({"instances":[[1,2,3],[4,5,6]]})"), two);
  EXPECT_EQ(Rows(R"([[1,2,3],[4,5,6]])"), two);
  EXPECT_EQ(Rows(R"( [1, 2, 3] )"), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(Rows(R"({"instances":[{"features":[1,2,3]},{"features":[4,5,6]}]})"), two);
  EXPECT_EQ(Rows(R"({"instances":[{"c":3,"a":1,"b":2},{"a":4,"b":5,"c":6}]})"), two);
  EXPECT_EQ(Rows(R"({"dataframe_records":[{"a":1,"b":2,"c":3},{"c":6,"b":5,"a":4}]})"), two);
  EXPECT_EQ(Rows(R"({"dataframe_split":{"columns":["b","a","c"],"index":[0,1],"data":[[2,1,3],[5,4,6]]}})"),
            two);
  EXPECT_EQ(Rows(R"({"dataframe_split":{"data":[[2,1,3],[5,4,6]],"columns":["b","a","c"]}})"), two);
  EXPECT_EQ(Rows(R"({"dataframe_split":{"data":[[1,2,3],[4,5,6]]}})"), two);
  EXPECT_EQ(Rows(R"({"inputs":[[1,2,3],[4,5,6]], "params": {"x": 1}})"), two);
  EXPECT_EQ(Rows(R"({"inputs":{"c":[3,6],"b":[2,5],"a":[1,4]}})"), two);
  auto nulls = Rows(R"({"instances":[[null,true,false]]})");
  ASSERT_EQ(nulls.size(), 3u);
  EXPECT_TRUE(std::isnan(nulls[0]));
  EXPECT_EQ(nulls[1], 1.0f);
  auto legacy = ParseJsonInstances("[[1,2,3]]", 3);
  ASSERT_TRUE(legacy.has_value());
  EXPECT_EQ(legacy->rows, 1u);
}

TEST(JsonInstancesTest, BadBodiesNameTheProblem) {
  auto p = [](std::string_view body) { return ParseJsonInstances(body, kFeatures); };
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,2]]})"), "instances[0]: 2 values; the model expects 3 features");
  EXPECT_ERROR_HAS(p(R"({"rows":[[1,2,3]]})"), "expected one of 'instances', 'inputs'");
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,[2],3]]})"),
                   "instances[0][1]: expected a number or null, found an array");
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,"2",3]]})"),
                   "instances[0][1]: expected a number or null, found a string");
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,2,3],[1,2e40,3]]})"),
                   "instances: value 2e40 at row 1, column 1 is not finite");
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,NaN,3]]})"), "invalid JSON at line 1, column 18: expected a value");
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,Infinity,3]]})"), "invalid JSON at line 1, column 18");
  EXPECT_ERROR_HAS(p(R"({"instances":[{"a":1,"b":2}]})"), "instances[0]: missing feature 'c'");
  EXPECT_ERROR_HAS(p(R"({"dataframe_records":[{"a":1,"b":2,"c":3,"x":4,"y":5}]})"),
                   "dataframe_records[0]: unknown columns 'x', 'y' (not features of this model)");
  EXPECT_ERROR_HAS(p(R"({"dataframe_records":[{"a":1,"b":2,"c":3,"a":4}]})"), "duplicate column 'a'");
  EXPECT_ERROR_HAS(p(R"({"dataframe_split":{"columns":["a","q"],"data":[[1,2]]}})"),
                   "dataframe_split.columns: unknown column 'q'");
  EXPECT_ERROR_HAS(p(R"({"dataframe_split":{"columns":["a","c"],"data":[[1,2]]}})"),
                   "dataframe_split.columns: missing feature 'b'");
  EXPECT_ERROR_HAS(p(R"({"dataframe_split":{"columns":["a","b","c"],"data":[[1,2]]}})"),
                   "dataframe_split.data[0]: 2 values; the columns name 3");
  EXPECT_ERROR_HAS(p(R"({"inputs":{"a":[1,2],"b":[3],"c":[4,5]}})"),
                   "inputs.b: 1 values, but the columns before it have 2");
  EXPECT_ERROR_HAS(p(R"({"instances":[[1,2,3]],"inputs":[[1,2,3]]})"), "both 'instances' and 'inputs'");
  EXPECT_ERROR_HAS(p(R"({"instances":[]})"), "instances: no rows");
  EXPECT_ERROR_HAS(p(R"({"instances":[1,2,3]})"),
                   "instances[0]: expected a row (an array of 3 values or an object)");
  EXPECT_ERROR_HAS(p(""), "request body: empty");
  EXPECT_ERROR_HAS(p(R"([[1,2,3]] x)"), "trailing characters");
  EXPECT_ERROR_HAS(p(R"("x")"), "expected a JSON object or array, found a string");
  EXPECT_ERROR_HAS(p("{\"params\":" + std::string(100, '[') + std::string(100, ']') + "}"),
                   "nesting deeper than 64 levels");
  EXPECT_ERROR_HAS(ParseJsonInstances(R"([{"a":1,"b":2,"c":3}])", 3), "need the model's feature names");
  EXPECT_ERROR_HAS(ParseJsonInstances(R"({"instances":[{}]})", 3), "need the model's feature names");  // fuzz
  ParseOptions options;
  options.max_rows = 1;
  EXPECT_NE(ErrorOf(ParseJsonInstances("[[1,2,3],[4,5,6]]", kFeatures, options), Code::kPayloadTooLarge)
                .find("more than 1 rows"),
            std::string::npos);
}

TEST(JsonInstancesTest, RendersPredictions) {
  EXPECT_EQ(RenderJsonPredictions(std::vector<float>{0.5f}), R"({"predictions":[0.5]})");
  std::vector<float> multi = {0.1f, 0.9f, 0.4f, NAN};
  EXPECT_EQ(RenderJsonPredictions(PredictionsView(multi, 2, 2)), R"({"predictions":[[0.1,0.9],[0.4,null]]})");
}

TEST(InvocationTest, PicksTheParserByContentType) {
  auto csv = ParseInvocation("text/csv; charset=utf-8", "1,2,3\n", kFeatures);
  ASSERT_TRUE(csv.has_value());
  EXPECT_EQ(csv->rows.rows, 1u);
  auto json = ParseInvocation("Application/JSON", R"({"instances":[[1,2,3]]})", kFeatures);
  ASSERT_TRUE(json.has_value());
  EXPECT_EQ(json->rows.values[2], 3.0f);
  EXPECT_NE(
      ErrorOf(ParseInvocation("text/plain", "1,2,3", kFeatures), Code::kUnsupportedMedia).find("text/plain"),
      std::string::npos);
  EXPECT_ERROR_HAS(ParseInvocation("text/csv", "", kFeatures), "the request body is empty");
}

}  // namespace
}  // namespace takt::serving
