/** The SHA-256 checksums a bundled data file must match. */
export interface DataFileChecksums {
  /** Of the gzipped file as shipped (the line in `data/SHA256SUMS`). */
  gzipped: string;
  /**
   * Of the decompressed contents: what a browser receives when a server sends the `.gz` file
   * with `Content-Encoding: gzip` and `fetch` decompresses it on the way in.
   */
  contents: string;
}

/** Checksums of every bundled data file, by path relative to the package's `data/` folder. */
export const DATA_FILES = {
  'CollegeMsg.txt.gz': {
    gzipped: 'ae1d08dd631df64206fa9eb6e36cdb9e581852e1bc689b6c0d2fac7ec752b64a',
    contents: '61c48411d84b3907f0ccc7468d47241a5e2a46a7234739e4379274a190293fe6',
  },
  'austen.txt.gz': {
    gzipped: '3f5db09b4a9d93d86b93130579a20f6413d046f64ca68fe3cb331c818c28f48f',
    contents: 'ae4140c6e5ab543cc81f68358120258f0935ac9e27a30f44a7a564b349307867',
  },
  'digits.csv.gz': {
    gzipped: '46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a',
    contents: '6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8',
  },
  'movielens_dslabs.csv.gz': {
    gzipped: '6664ac75f9378f44a916bc1e3de046bcaa7302af70a2be1ca8165a40fdbffdf2',
    contents: '821795331fd974bbe7a8416f2a7eec2b548a485dedb47a073580b0a9a8a0a8d2',
  },
  'soc-sign-bitcoinotc.csv.gz': {
    gzipped: 'c7a8fe5e6048fdb4fa50eac126d55e1618d15bc74cd99b38965881cc6486c4f4',
    contents: '22b08170d37407697764acabc1b8b361ffad2d71c7c9dc002d3702548c0ca8e1',
  },
  'fashion-mnist/t10k-images-idx3-ubyte.gz': {
    gzipped: 'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa',
    contents: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
  },
  'fashion-mnist/t10k-labels-idx1-ubyte.gz': {
    gzipped: '8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05',
    contents: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
  },
  'fashion-mnist/train-images-idx3-ubyte.gz': {
    gzipped: 'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7',
    contents: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
  },
  'fashion-mnist/train-labels-idx1-ubyte.gz': {
    gzipped: '0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056',
    contents: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
  },
} as const satisfies Record<string, DataFileChecksums>;

/** Path of a bundled data file, relative to the package's `data/` folder. */
export type DataFileName = keyof typeof DATA_FILES;
